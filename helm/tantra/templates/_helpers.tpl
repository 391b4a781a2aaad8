{{/* Names: <release>-tantra, shortened to 63 characters (a DNS label). */}}
{{- define "tantra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tantra.fullname" -}}
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

{{/* A component's name: <fullname>-<component>. Call with (list $ "gateway"). */}}
{{- define "tantra.component" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "tantra.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tantra.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{ include "tantra.selectorLabels" . }}
{{- end }}

{{/* Selector labels never change across upgrades: Deployments' selectors are immutable. */}}
{{- define "tantra.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tantra.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "tantra.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tantra.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A Tantra image: (list $ .Values.gateway.image). */}}
{{- define "tantra.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s%s:%s" $root.Values.imageRegistry $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The Secret that holds the gateway's credentials (database and Redis URLs, admin key). */}}
{{- define "tantra.secretName" -}}
{{- include "tantra.component" (list . "gateway") }}
{{- end }}

{{/*
A value kept across upgrades: the one already in the release's Secret if there is one,
else `default`. `helm template` has no cluster to ask, so it renders `default`.
Call with (list $ "key" default).
*/}}
{{- define "tantra.keptSecretValue" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (include "tantra.secretName" $root) }}
{{- if and $existing $existing.data (hasKey $existing.data $key) }}
{{- index $existing.data $key | b64dec }}
{{- else }}
{{- index . 2 }}
{{- end }}
{{- end }}

{{- define "tantra.postgresPassword" -}}
{{- $pg := .Values.postgresql.bundled }}
{{- if $pg.password }}
{{- $pg.password }}
{{- else }}
{{- include "tantra.keptSecretValue" (list . "postgres-password" (randAlphaNum 32)) }}
{{- end }}
{{- end }}

{{- define "tantra.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Where one credential lives: the user's existing Secret when `source` names one, else the chart's.
Renders `name:` and `key:` for a secretKeyRef. Call with (list $ source defaultKey).
*/}}
{{- define "tantra.secretKeyRef" -}}
{{- $root := index . 0 -}}
{{- $source := index . 1 -}}
{{- if $source.existingSecret -}}
name: {{ $source.existingSecret | quote }}
key: {{ $source.existingSecretKey | quote }}
{{- else -}}
name: {{ include "tantra.secretName" $root | quote }}
key: {{ index . 2 | quote }}
{{- end }}
{{- end }}

{{/* The external settings of Redis or PostgreSQL when that mode is used, else nothing. */}}
{{- define "tantra.externalSource" -}}
{{- if eq .mode "external" }}{{ toJson .external }}{{ else }}{}{{ end }}
{{- end }}
