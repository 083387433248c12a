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

{{/* An image reference: (dict "root" $ "image" .Values.x.image). global.imageRegistry replaces the
image's registry; a digest pins the image (registry/repository@digest), else the tag. */}}
{{- define "visionloop.imageRef" -}}
{{- $registry := default .image.registry .root.Values.global.imageRegistry -}}
{{- $name := .image.repository -}}
{{- if $registry }}{{ $name = printf "%s/%s" (trimSuffix "/" $registry) $name }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $name .image.digest }}
{{- else -}}
{{- printf "%s:%s" $name (default .root.Chart.AppVersion .image.tag) }}
{{- end -}}
{{- end }}

{{/* Image of a VisionLoop component: its own fields, the top-level image's where empty (the digest only
for the same repository). (dict "root" $ "component" "detector") */}}
{{- define "visionloop.image" -}}
{{- $top := .root.Values.image -}}
{{- $own := (index .root.Values .component).image -}}
{{- $image := dict "registry" (default $top.registry $own.registry) "repository" (default $top.repository $own.repository) -}}
{{- $_ := set $image "tag" (default $top.tag $own.tag) -}}
{{- $_ := set $image "digest" (ternary (default $top.digest $own.digest) $own.digest (empty $own.repository)) -}}
{{- include "visionloop.imageRef" (dict "root" .root "image" $image) }}
{{- end }}

{{/* imagePullSecrets: global's and the chart's, each as a name or {name: ...}. */}}
{{- define "visionloop.imagePullSecrets" -}}
{{- $names := list -}}
{{- range (concat .Values.global.imagePullSecrets .Values.imagePullSecrets) -}}
{{- if kindIs "map" . }}{{ $names = append $names .name }}{{ else }}{{ $names = append $names . }}{{ end -}}
{{- end -}}
{{- with uniq $names }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
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
- name: VISIONLOOP_GRPC_KEEPALIVE_SECONDS
  value: {{ .root.Values.config.grpcKeepaliveSeconds | quote }}
- name: VISIONLOOP_GRPC_KEEPALIVE_TIMEOUT_SECONDS
  value: {{ .root.Values.config.grpcKeepaliveTimeoutSeconds | quote }}
{{- with $values.connections }}
{{- if .maxAgeSeconds }}
- name: VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS
  value: {{ .maxAgeSeconds | quote }}
{{- if not (kindIs "invalid" .maxAgeGraceSeconds) }}
- name: VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS
  value: {{ .maxAgeGraceSeconds | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- include "visionloop.tlsEnv" . }}
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

{{/* Native gRPC probes (grpc.health.v1): on the service port, or with TLS on the plaintext health port
(kubelet's gRPC probes cannot speak TLS; an exec probe would start a Python per probe). (dict "root" $ "values" $values) */}}
{{- define "visionloop.grpcProbes" -}}
{{- $port := ternary .root.Values.tls.healthPort .values.port .root.Values.tls.enabled -}}
startupProbe:
  grpc:
    port: {{ $port }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ $port }}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ $port }}
  periodSeconds: 10
  failureThreshold: 3
{{- end }}

{{/* Where the TLS Secrets are mounted. */}}
{{- define "visionloop.tlsPath" -}}/etc/visionloop/tls{{- end }}
{{- define "visionloop.tlsClientPath" -}}/etc/visionloop/tls-client{{- end }}

{{/* TLS settings of a VisionLoop service: its server certificate, the client CA with mutual TLS, and for
nodes the hub's CA and their client certificate. (dict "root" $ "component" "detector") */}}
{{- define "visionloop.tlsEnv" -}}
{{- $tls := .root.Values.tls -}}
{{- if $tls.enabled }}
{{- $path := include "visionloop.tlsPath" . }}
- name: VISIONLOOP_TLS_CERT
  value: {{ printf "%s/tls.crt" $path | quote }}
- name: VISIONLOOP_TLS_KEY
  value: {{ printf "%s/tls.key" $path | quote }}
{{- if $tls.mutual }}
- name: VISIONLOOP_TLS_CLIENT_CA
  value: {{ printf "%s/ca.crt" $path | quote }}
{{- end }}
- name: VISIONLOOP_HEALTH_PORT
  value: {{ $tls.healthPort | quote }}
{{- if ne .component "loop" }}
- name: LOOP_SSL_CERT_PATH
  value: {{ printf "%s/ca.crt" $path | quote }}
{{- if $tls.mutual }}
{{- $client := ternary (include "visionloop.tlsClientPath" .) $path (not (empty $tls.clientSecret)) }}
- name: LOOP_CLIENT_CERT
  value: {{ printf "%s/tls.crt" $client | quote }}
- name: LOOP_CLIENT_KEY
  value: {{ printf "%s/tls.key" $client | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The TLS Secrets as volumes (only the keys used, readable by the pod's group). */}}
{{- define "visionloop.tlsVolumes" -}}
{{- $tls := .Values.tls -}}
{{- if $tls.enabled }}
- name: tls
  secret:
    secretName: {{ $tls.existingSecret | quote }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- if and $tls.mutual $tls.clientSecret }}
- name: tls-client
  secret:
    secretName: {{ $tls.clientSecret | quote }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- end }}
{{- end }}

{{- define "visionloop.tlsMounts" -}}
{{- $tls := .Values.tls -}}
{{- if $tls.enabled }}
- name: tls
  mountPath: {{ include "visionloop.tlsPath" . }}
  readOnly: true
{{- if and $tls.mutual $tls.clientSecret }}
- name: tls-client
  mountPath: {{ include "visionloop.tlsClientPath" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* A container's env: the chart's entries (YAML text), then env (name -> value) and extraEnv, which
replace a chart entry of the same name. (dict "env" $text "values" $values) */}}
{{- define "visionloop.mergeEnv" -}}
{{- $chart := fromYamlArray .env -}}
{{- $own := list -}}
{{- range $name, $value := (default dict .values.env) }}{{ $own = append $own (dict "name" $name "value" (toString $value)) }}{{ end -}}
{{- $own = concat $own (default list .values.extraEnv) -}}
{{- $names := list -}}
{{- range $own }}{{ $names = append $names .name }}{{ end -}}
{{- $merged := list -}}
{{- range $chart }}{{ if not (has .name $names) }}{{ $merged = append $merged . }}{{ end }}{{ end -}}
{{- toYaml (concat $merged $own) }}
{{- end }}

{{/* Pod metadata: selector labels over podLabels; podAnnotations and the chart's annotations.
(dict "root" $ "component" "detector" "values" $values "annotations" (dict ...)) */}}
{{- define "visionloop.podMetadata" -}}
labels:
  {{- $selector := include "visionloop.componentSelectorLabels" (dict "root" .root "component" .component) | fromYaml }}
  {{- toYaml (merge $selector (default dict .values.podLabels)) | nindent 2 }}
{{- $annotations := merge (default dict .annotations) (default dict .values.podAnnotations) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where and how a pod runs: runtime and priority class, node selection, spread. (dict "root" $ "component" ... "values" ...) */}}
{{- define "visionloop.podPlacement" -}}
{{- with .values.runtimeClassName }}
runtimeClassName: {{ . | quote }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
{{- $selector := include "visionloop.componentSelectorLabels" (dict "root" .root "component" .component) | fromYaml }}
{{- $constraints := list }}
{{- range .values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end }}

{{/* The S3 repository path Triton takes (its S3 path rule, core/src/filesystem/implementations/s3.h):
s3://bucket/prefix on AWS (the region from AWS_DEFAULT_REGION), otherwise s3://[https://]host:port/bucket/prefix
with the port spelled out: a path without host:port is read as s3://bucket/... The same rule as the
converter's triton_s3_url. */}}
{{- define "visionloop.tritonS3Url" -}}
{{- $endpoint := include "visionloop.s3Endpoint" . -}}
{{- $bucket := .Values.s3.bucket -}}
{{- $prefix := .Values.triton.repositoryPrefix -}}
{{- $url := urlParse $endpoint -}}
{{- $host := $url.hostname -}}
{{- if or (eq $host "amazonaws.com") (hasSuffix ".amazonaws.com" $host) (hasSuffix ".amazonaws.com.cn" $host) -}}
{{- printf "s3://%s/%s" $bucket $prefix }}
{{- else -}}
{{- if not (regexMatch "^[0-9A-Za-z.-]+$" $host) -}}
{{- fail (printf "s3.endpoint %q: Triton reads an S3 endpoint only as a host name or IPv4 address (letters, digits, '.', '-'); give it a DNS name" $endpoint) -}}
{{- end -}}
{{- if not (regexMatch "^[0-9a-z.-]+$" $bucket) -}}
{{- fail (printf "s3.bucket %q: Triton takes bucket names of a-z, 0-9, '.' and '-' only" $bucket) -}}
{{- end -}}
{{- $port := trimPrefix ":" (trimPrefix $host $url.host) -}}
{{- $port = default (ternary "443" "80" (eq $url.scheme "https")) $port -}}
{{- printf "s3://%s%s:%s/%s/%s" (ternary "https://" "" (eq $url.scheme "https")) $host $port $bucket $prefix }}
{{- end -}}
{{- end }}

{{/* A VisionLoop container's environment as the chart sets it (before env/extraEnv). (dict "root" $ "component" ...) */}}
{{- define "visionloop.componentEnv" -}}
{{- $values := index .root.Values .component -}}
{{- include "visionloop.commonEnv" . }}
{{- if eq .component "loop" }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "visionloop.databaseSecretName" .root }}
      key: database-url
- name: VISIONLOOP_BOOTSTRAP_PROJECT
  value: {{ .root.Values.config.bootstrapProject | quote }}
- name: VISIONLOOP_PUBLIC_ADDRESS
  value: {{ include "visionloop.loopHost" .root | quote }}
{{- /* Hubs that may run at once: the replicas, and the one an upgrade adds. With more than
one, failed uploads leave their blobs to the sweep and uploads check the sweep's log. */}}
- name: VISIONLOOP_HUB_REPLICAS
  value: {{ add .root.Values.loop.replicas 1 | quote }}
{{- include "visionloop.s3Env" .root  }}
{{- end }}
{{- if eq .component "converter" }}
{{- include "visionloop.s3Env" .root  }}
- name: CONVERTER_TRITON_PREFIX
  value: {{ .root.Values.triton.repositoryPrefix | quote }}
{{- end }}
{{- if eq .component "detector" }}
- name: DETECTOR_BACKEND
  value: {{ $values.backend | quote }}
{{- if eq $values.backend "triton" }}
- name: TRITON_URL
  value: {{ printf "%s-triton-pods:8001" (include "visionloop.fullname" .root) | quote }}
- name: TRITON_MODEL_REPOSITORY
  value: /models
{{- end }}
- name: DETECTOR_MAX_BATCH_SIZE
  value: {{ $values.maxBatchSize | quote }}
- name: DETECTOR_MAX_BATCH_WAIT_MS
  value: {{ $values.maxBatchWaitMs | quote }}
- name: MIN_UNCERTAIN_THRESHOLD
  value: {{ $values.minUncertainThreshold | quote }}
- name: MAX_UNCERTAIN_THRESHOLD
  value: {{ $values.maxUncertainThreshold | quote }}
{{- end }}
{{- if and (eq .component "annotator") $values.labelStudio.enabled }}
- name: LABEL_STUDIO_PORT
  value: {{ $values.labelStudio.port | quote }}
- name: LABEL_STUDIO_BRIDGE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-label-studio" (include "visionloop.fullname" .root)) $values.labelStudio.existingSecret }}
      key: label-studio-bridge-token
{{- end }}
{{- if eq .component "trainer" }}
- name: INFERENCE_BATCH_SIZE
  value: {{ $values.inferenceBatchSize | quote }}
- name: KEEP_OLD_TRAININGS
  value: {{ $values.keepOldTrainings | quote }}
{{- end }}
{{- end }}
