{{/*
Naming, labels and the small decisions every template shares: where the
database and Redis URLs come from, which Secret holds what, and the service
addresses the components use to reach each other.
*/}}

{{- define "clawgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clawgate.fullname" -}}
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

{{- define "clawgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "clawgate.labels" -}}
helm.sh/chart: {{ include "clawgate.chart" . }}
app.kubernetes.io/name: {{ include "clawgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: clawgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "edge"). */}}
{{- define "clawgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clawgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component: (dict "root" $ "component" "edge"). */}}
{{- define "clawgate.componentLabels" -}}
{{ include "clawgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "clawgate.componentName" -}}
{{- printf "%s-%s" (include "clawgate.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clawgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clawgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "clawgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* host:port for a listener, with brackets for IPv6 bind addresses. */}}
{{- define "clawgate.bind" -}}
{{- if contains ":" .host }}
{{- printf "[%s]:%d" .host (int .port) }}
{{- else }}
{{- printf "%s:%d" .host (int .port) }}
{{- end }}
{{- end }}

{{/* The chart-managed Secret (gateway token, keys, generated URLs). */}}
{{- define "clawgate.secretName" -}}
{{- include "clawgate.fullname" . }}
{{- end }}

{{/* The Secret holding the application secrets: an existing one or the chart's. */}}
{{- define "clawgate.appSecretName" -}}
{{- default (include "clawgate.secretName" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Where the PostgreSQL URL comes from, in order of precedence:
"existingSecret" | "url" | "postgresql" (in-chart) | "" (not configured).
*/}}
{{- define "clawgate.databaseSource" -}}
{{- if .Values.externalDatabase.existingSecret }}existingSecret
{{- else if .Values.externalDatabase.url }}url
{{- else if .Values.postgresql.enabled }}postgresql
{{- end }}
{{- end }}

{{/* Same for Redis: "existingSecret" | "url" | "redis" (in-chart) | "". */}}
{{- define "clawgate.redisSource" -}}
{{- if .Values.externalRedis.existingSecret }}existingSecret
{{- else if .Values.externalRedis.url }}url
{{- else if .Values.redis.enabled }}redis
{{- end }}
{{- end }}

{{- define "clawgate.databaseSecretName" -}}
{{- if eq (include "clawgate.databaseSource" .) "existingSecret" }}
{{- .Values.externalDatabase.existingSecret }}
{{- else }}
{{- include "clawgate.secretName" . }}
{{- end }}
{{- end }}

{{- define "clawgate.databaseSecretKey" -}}
{{- if eq (include "clawgate.databaseSource" .) "existingSecret" }}
{{- .Values.externalDatabase.existingSecretKey }}
{{- else }}database-url
{{- end }}
{{- end }}

{{/*
Where the migration Job reads its URL (the schema owner's), besides the hook
Secret of an external URL (see migrate-job.yaml): the existing Secret's
migration key (default: its URL key), or the chart Secret's
"migration-database-url" (in-chart PostgreSQL, its superuser).
*/}}
{{- define "clawgate.migrationSecretKey" -}}
{{- $src := include "clawgate.databaseSource" . }}
{{- if eq $src "existingSecret" }}
{{- .Values.externalDatabase.existingSecretMigrationKey | default .Values.externalDatabase.existingSecretKey }}
{{- else if eq $src "postgresql" }}migration-database-url
{{- else }}database-url
{{- end }}
{{- end }}

{{- define "clawgate.redisSecretName" -}}
{{- if eq (include "clawgate.redisSource" .) "existingSecret" }}
{{- .Values.externalRedis.existingSecret }}
{{- else }}
{{- include "clawgate.secretName" . }}
{{- end }}
{{- end }}

{{- define "clawgate.redisSecretKey" -}}
{{- if eq (include "clawgate.redisSource" .) "existingSecret" }}
{{- .Values.externalRedis.existingSecretKey }}
{{- else }}redis-url
{{- end }}
{{- end }}

{{/* gRPC address of a component's Service: (dict "root" $ "component" "auth"). */}}
{{- define "clawgate.grpcUrl" -}}
{{- $c := index .root.Values .component }}
{{- $svc := include "clawgate.serviceName" . }}
{{- printf "http://%s.%s.svc.%s:%d" $svc .root.Release.Namespace .root.Values.clusterDomain (int $c.grpcPort) }}
{{- end }}

{{/* The Service name of a component; headless ones say so in their name. */}}
{{- define "clawgate.serviceName" -}}
{{- $c := index .root.Values .component }}
{{- if or (eq .component "runner") (and (ne .component "edge") $c.service.headless) }}
{{- printf "%s-headless" (include "clawgate.componentName" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "clawgate.componentName" . }}
{{- end }}
{{- end }}

{{/* Fully qualified gRPC health service name of a component. */}}
{{- define "clawgate.grpcHealthService" -}}
{{- $names := dict "auth" "clawgate.auth.v1.AuthService" "runner" "clawgate.runner.v1.RunnerService" "session" "clawgate.session.v1.SessionService" "cron" "clawgate.cron.v1.CronService" "channel" "clawgate.channel.v1.ChannelService" }}
{{- index $names . }}
{{- end }}

{{/* Pod security context shared by the clawgate pods. */}}
{{- define "clawgate.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "clawgate.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}
