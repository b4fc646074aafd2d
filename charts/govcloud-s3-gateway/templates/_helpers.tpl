{{/* Chart name. */}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: the release name if it already contains the chart name. */}}
{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: govcloud
app.kubernetes.io/component: backup-encryption
{{- end -}}

{{- define "gateway.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The gateway's configuration file (operator/gateway/src/config.rs). */}}
{{- define "gateway.config" -}}
listen: 0.0.0.0:{{ .Values.port }}
upstream:
  endpoint: {{ required "upstream.endpoint is required: the URL of the object store" .Values.upstream.endpoint | quote }}
  region: {{ .Values.upstream.region | quote }}
  accessKey: {{ required "upstream.accessKey is required" .Values.upstream.accessKey | quote }}
  secretKeyFile: /etc/govcloud-gateway/upstream/{{ .Values.upstream.secretKey }}
keyDir: /etc/govcloud-gateway/kek
keyCacheSeconds: {{ .Values.keyCacheSeconds }}
agencies:
{{- range .Values.agencies }}
  - name: {{ .name | quote }}
    accessKey: {{ .accessKey | quote }}
    secretKeyFile: /etc/govcloud-gateway/agencies/{{ .name }}
    bucket: {{ .bucket | quote }}
    prefix: {{ .prefix | quote }}
{{- end }}
{{- end -}}

{{/* Labels of the `helm test` pod: admitted by the chart's NetworkPolicy, never selected by the Service. */}}
{{- define "gateway.testLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: govcloud
{{- end -}}
