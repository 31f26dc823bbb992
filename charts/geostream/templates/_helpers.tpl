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

{{- define "geostream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) | quote -}}
{{- end -}}

{{/* Kafka bootstrap: the Strimzi cluster's bootstrap Service when the chart makes one, else the value. */}}
{{- define "geostream.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-kafka-bootstrap.%s.svc:9092" .Release.Name .Release.Namespace -}}
{{- else -}}
{{- required "kafka.bootstrap is required (or kafka.strimzi.enabled=true to let the chart make a Kafka with Strimzi)" .Values.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{/* Search engine URL: the ECK cluster's HTTP Service when the chart makes one, else the value (may be empty). */}}
{{- define "geostream.elasticsearchUrl" -}}
{{- if .Values.elasticsearch.eck.enabled -}}
{{- printf "http://%s-es-es-http.%s.svc:9200" .Release.Name .Release.Namespace -}}
{{- else -}}
{{- .Values.elasticsearch.url -}}
{{- end -}}
{{- end -}}

{{/* The Elasticsearch password as an environment variable from a Secret: never in the ConfigMap. */}}
{{- define "geostream.searchCredentials" -}}
{{- if .Values.elasticsearch.eck.enabled }}
- name: GEOSTREAM_ELASTICSEARCH__USERNAME
  value: elastic
- name: GEOSTREAM_ELASTICSEARCH__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ printf "%s-es-es-elastic-user" .Release.Name }}
      key: elastic
{{- else if .Values.elasticsearch.existingSecret }}
- name: GEOSTREAM_ELASTICSEARCH__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.elasticsearch.existingSecret }}
      key: {{ .Values.elasticsearch.existingSecretKey }}
{{- end }}
{{- end -}}

{{- define "geostream.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "geostream.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "geostream.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
{{- end -}}

{{/* Spread a component's pods over nodes (and zones, when the cluster has them) without blocking scheduling. */}}
{{- define "geostream.topologySpread" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- if $ctx.Values.availability.topologySpread }}
topologySpreadConstraints:
  {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "geostream.selectorLabels" $ctx | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The config volume every stage mounts. */}}
{{- define "geostream.configVolume" -}}
- name: config
  configMap:
    name: {{ include "geostream.fullname" . }}-config
{{- end -}}

{{/* The archive's object store credentials (sink, and the API when it answers from the archive). */}}
{{- define "geostream.archiveSecretMount" -}}
{{- if and .Values.sink.archive.enabled .Values.sink.archive.s3.existingSecret }}
- name: archive-credentials
  mountPath: /var/run/secrets/geostream-archive
  readOnly: true
{{- end }}
{{- end -}}

{{- define "geostream.archiveSecretVolume" -}}
{{- if and .Values.sink.archive.enabled .Values.sink.archive.s3.existingSecret }}
- name: archive-credentials
  secret:
    secretName: {{ .Values.sink.archive.s3.existingSecret }}
    # Keys: `access-key-id` and `secret-access-key`.
    optional: false
{{- end }}
{{- end -}}

{{/* The Kafka SASL password and CA Secrets, mounted into every stage when set. */}}
{{- define "geostream.kafkaSecretMounts" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  mountPath: /var/run/secrets/geostream-kafka/sasl
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /var/run/secrets/geostream-kafka/ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "geostream.kafkaSecretVolumes" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  secret:
    secretName: {{ .Values.kafka.sasl.existingSecret }}
    items:
      - key: {{ .Values.kafka.sasl.existingSecretKey }}
        path: password
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caSecretKey }}
        path: ca.pem
{{- end }}
{{- end -}}
