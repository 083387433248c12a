{{/* Chart name. */}}
{{- define "visionloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters. */}}
{{- define "visionloop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "visionloop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "visionloop.labels" -}}
helm.sh/chart: {{ include "visionloop.chart" . }}
app.kubernetes.io/name: {{ include "visionloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: visionloop
{{- end }}

{{- define "visionloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visionloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "detector"). */}}
{{- define "visionloop.componentLabels" -}}
{{ include "visionloop.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "visionloop.componentSelectorLabels" -}}
{{ include "visionloop.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "visionloop.componentName" -}}
{{- printf "%s-%s" (include "visionloop.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "visionloop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "visionloop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image of a VisionLoop component: its own repository/tag or the shared ones. */}}
{{- define "visionloop.image" -}}
{{- $values := index .root.Values .component -}}
{{- $repository := default .root.Values.image.repository $values.image.repository -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) $values.image.tag -}}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "visionloop.secretName" -}}
{{- printf "%s-credentials" (include "visionloop.fullname" .) }}
{{- end }}

{{- define "visionloop.authSecretName" -}}
{{- default (printf "%s-auth" (include "visionloop.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* The auth Secret's key holding a node kind's own token, its LOOP_TOKEN. */}}
{{- define "visionloop.nodeTokenKey" -}}
{{- get (dict "detector" "detector-token" "trainer" "trainer-token" "converter" "converter-token" "annotator" "annotator-node-token") . }}
{{- end }}

{{- define "visionloop.databaseSecretName" -}}
{{- default (include "visionloop.secretName" .) .Values.database.existingSecret }}
{{- end }}

{{- define "visionloop.s3SecretName" -}}
{{- default (include "visionloop.secretName" .) .Values.s3.existingSecret }}
{{- end }}

{{/* S3 endpoint: the bundled MinIO's or the external one. */}}
{{- define "visionloop.s3Endpoint" -}}
{{- if .Values.minio.bundled }}
{{- printf "http://%s-minio:9000" (include "visionloop.fullname" .) }}
{{- else }}
{{- .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{- define "visionloop.loopHost" -}}
{{- printf "%s-loop:%d" (include "visionloop.fullname" .) (int .Values.loop.port) }}
{{- end }}

{{/* Environment every VisionLoop service gets: (dict "root" $ "component" "detector"). */}}
{{- define "visionloop.commonEnv" -}}
{{- $values := index .root.Values .component -}}
- name: VISIONLOOP_HOST
  value: "0.0.0.0"
- name: VISIONLOOP_PORT
  value: {{ $values.port | quote }}
- name: VISIONLOOP_METRICS_PORT
  value: {{ $values.metricsPort | quote }}
- name: VISIONLOOP_DATA_DIR
  value: /data
- name: VISIONLOOP_LOG_FORMAT
  value: json
- name: VISIONLOOP_LOG_LEVEL
  value: {{ .root.Values.config.logLevel | quote }}
- name: VISIONLOOP_SHUTDOWN_GRACE_SECONDS
  value: {{ .root.Values.config.shutdownGraceSeconds | quote }}
- name: VISIONLOOP_SHUTDOWN_DRAIN_SECONDS
  value: {{ .root.Values.config.shutdownDrainSeconds | quote }}
{{- if .root.Values.auth.enabled }}
- name: VISIONLOOP_AUTH_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "visionloop.authSecretName" .root }}
      key: auth-tokens
{{- end }}
{{- if ne .component "loop" }}
- name: LOOP_HOST
  value: {{ include "visionloop.loopHost" .root | quote }}
- name: LOOP_ORGANIZATION
  value: {{ .root.Values.config.organization | quote }}
- name: LOOP_PROJECT
  value: {{ .root.Values.config.project | quote }}
{{- if .root.Values.auth.enabled }}
- name: LOOP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "visionloop.authSecretName" .root }}
      key: {{ include "visionloop.nodeTokenKey" .component }}
{{- end }}
{{- end }}
{{- range $name, $value := $values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* S3 settings for the hub and the converter. */}}
{{- define "visionloop.s3Env" -}}
{{- if or .Values.minio.bundled .Values.s3.endpoint }}
- name: S3_ENDPOINT
  value: {{ include "visionloop.s3Endpoint" . | quote }}
- name: S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "visionloop.s3SecretName" . }}
      key: s3-access-key-id
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "visionloop.s3SecretName" . }}
      key: s3-secret-access-key
{{- end }}
{{- end }}

{{/* Native gRPC probes on the service's port (grpc.health.v1). */}}
{{- define "visionloop.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 10
  failureThreshold: 3
{{- end }}
