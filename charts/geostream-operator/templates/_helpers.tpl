{{- define "geostream-operator.fullname" -}}
{{- printf "%s-geostream-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "geostream-operator.labels" -}}
app.kubernetes.io/name: geostream-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: geostream
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "geostream-operator.selectorLabels" -}}
app.kubernetes.io/name: geostream-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "geostream-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "geostream-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
