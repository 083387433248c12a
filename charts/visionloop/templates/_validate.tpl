{{/* Combinations of values that cannot work: refused with what to change. */}}
{{- define "visionloop.validate" -}}
{{- $v := .Values -}}
{{- if and $v.detector.enabled (eq $v.detector.backend "triton") (not $v.triton.enabled) }}
{{- fail "detector.backend=triton needs triton.enabled=true (the chart's Triton serves the detectors)" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt (e.g. a cert-manager Certificate's)" }}
{{- end }}
{{- if and $v.tls.mutual (not $v.tls.enabled) }}
{{- fail "tls.mutual needs tls.enabled=true and tls.existingSecret" }}
{{- end }}
{{- if and $v.tls.enabled (has (int $v.tls.healthPort) (list (int $v.loop.port) (int $v.detector.port) (int $v.trainer.port) (int $v.converter.port) (int $v.annotator.port) (int $v.loop.metricsPort) (int $v.detector.metricsPort) (int $v.trainer.metricsPort) (int $v.converter.metricsPort) (int $v.annotator.metricsPort))) }}
{{- fail (printf "tls.healthPort %d is a service or metrics port: give the plaintext health port one of its own" (int $v.tls.healthPort)) }}
{{- end }}
{{- $s3 := or $v.minio.bundled $v.s3.endpoint }}
{{- if and $v.loop.enabled (gt (int $v.loop.replicas) 1) (not $s3) }}
{{- fail (printf "loop.replicas=%d without S3: each hub would keep images in its own pod's scratch volume, so images uploaded to one are missing on the others. Set s3.endpoint (or minio.bundled for a trial), or loop.replicas=1" (int $v.loop.replicas)) }}
{{- end }}
{{- $studio := $v.annotator.labelStudio }}
{{- if and $v.annotator.enabled $studio.enabled }}
{{- if gt (int $v.annotator.replicas) 1 }}
{{- fail (printf "annotator.labelStudio.enabled with annotator.replicas=%d: the bridge keeps which hub annotation each Label Studio region wrote in its pod, so Label Studio's edits must all reach one annotator; set annotator.replicas=1" (int $v.annotator.replicas)) }}
{{- end }}
{{- if and (not $studio.existingSecret) (lt (len $studio.token) 16) }}
{{- fail "annotator.labelStudio.enabled needs annotator.labelStudio.token (16 characters or more) or annotator.labelStudio.existingSecret (key label-studio-bridge-token): Label Studio presents it to the bridge" }}
{{- end }}
{{- end }}
{{- range $component := list "loop" "detector" "annotator" }}
{{- $values := index $v $component }}
{{- if and $values.enabled $values.ingress.enabled (not $values.ingress.hosts) }}
{{- fail (printf "%s.ingress.enabled needs %s.ingress.hosts: the host names routed to it" $component $component) }}
{{- end }}
{{- if and $values.enabled $values.grpcRoute.enabled (not $values.grpcRoute.parentRefs) }}
{{- fail (printf "%s.grpcRoute.enabled needs %s.grpcRoute.parentRefs: the Gateway (listener) it attaches to" $component $component) }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the auth Secret's tokens are random and this render could not read the cluster to keep
them (helm template, Argo CD, a client-side dry run, podman kube play): each such render makes new ones. */}}
{{- define "visionloop.tokensChangeEachRender" -}}
{{- $auth := .Values.auth -}}
{{- $t := $auth.tokens -}}
{{- $allGiven := and $t.admin $t.operator $t.robot $t.annotator $t.detector $t.trainer $t.converter $t.annotatorNode -}}
{{- if and $auth.enabled (not $auth.existingSecret) (not $auth.tokenSeed) (not $allGiven) -}}
{{- /* Listing the namespace's Secrets answers a SecretList on a cluster (Helm itself needs the right), nothing offline. */}}
{{- if not (lookup "v1" "Secret" .Release.Namespace "") }}true{{ end -}}
{{- end -}}
{{- end }}
