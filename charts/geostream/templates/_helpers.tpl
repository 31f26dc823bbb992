{{/* The tenant is required: every name in the release derives from it. */}}
{{- define "geostream.tenant" -}}
{{- required "values.tenant is required: the tenant this release serves (a lowercase DNS label, e.g. acme-ports)" .Values.tenant -}}
{{- end -}}

{{- define "geostream.fullname" -}}
{{- printf "%s-geostream" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "geostream.labels" -}}
app.kubernetes.io/name: geostream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
geostream.io/tenant: {{ include "geostream.tenant" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "geostream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "geostream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels that select one release's pods (stable across upgrades, unlike the version labels). */}}
{{- define "geostream.selectorLabels" -}}
app.kubernetes.io/name: geostream
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
