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

{{/*
The gateway pods' account: their own when gateway.serviceAccount.annotations give it a cloud
identity (IRSA, ...), which the engine pods must not share; else the release's.
*/}}
{{- define "tantra.gatewayServiceAccountName" -}}
{{- if or .Values.gateway.serviceAccount.annotations (include "tantra.watchesEndpointSlices" .) }}
{{- include "tantra.component" (list . "gateway") }}
{{- else }}
{{- include "tantra.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/* A Tantra image: (list $ .Values.gateway.image). */}}
{{- define "tantra.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s%s:%s" $root.Values.imageRegistry $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/*
The engine's image: the CPU and CUDA builds are separate tags, `<appVersion>-<variant>` (docker/
engine.Dockerfile's VLLM_TARGET), unless engine.image.tag names one.
*/}}
{{- define "tantra.engineImage" -}}
{{- $image := .Values.engine.image }}
{{- $tag := $image.tag | default (printf "%s-%s" .Chart.AppVersion ($image.variant | default "cpu")) }}
{{- printf "%s%s:%s" .Values.imageRegistry $image.repository $tag }}
{{- end }}

{{/* EndpointSlice discovery: the gateways watch the Kubernetes API, with RBAC of their own. */}}
{{- define "tantra.watchesEndpointSlices" -}}
{{- if and .Values.engine.discovery.enabled (eq (.Values.engine.discovery.mode | default "dns") "endpointslices") (not (hasKey .Values.gateway.settings "upstreams")) }}true{{ end }}
{{- end }}

{{/* The Secret that holds the gateway's credentials (database and Redis URLs, admin key). */}}
{{- define "tantra.secretName" -}}
{{- include "tantra.component" (list . "gateway") }}
{{- end }}

{{/*
Credentials are never random at render time (the same values give the same manifests, so GitOps
tools see no drift and the gateways are not restarted by every sync). Each comes from the user's
Secret (`existingSecret`), from a value in the values (kept in the chart's Secret), or else from
the Secret `<fullname>-generated` that the pre-install/pre-upgrade hook Job fills once
(secret-generator.yaml) and never changes.
*/}}
{{- define "tantra.generatedSecretName" -}}
{{- include "tantra.component" (list . "generated") }}
{{- end }}

{{/* The credentials the hook must generate, as JSON {key: kind}; {} when every one is given. */}}
{{- define "tantra.generatedKeys" -}}
{{- $keys := dict }}
{{- $pg := .Values.postgresql }}
{{- if and (eq $pg.mode "bundled") (not $pg.bundled.existingSecret) (not $pg.bundled.password) }}
{{- $_ := set $keys "postgres-password" "hex" }}
{{- end }}
{{- $admin := .Values.gateway.adminKey }}
{{- if and (not $admin.existingSecret) (not $admin.value) }}
{{- $_ := set $keys "admin-key" "admin" }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/*
Where one credential lives, as `name:` and `key:` lines for a secretKeyRef:
(list $ source value key): the user's `source.existingSecret`, else the chart's Secret when
`value` is set, else the generated Secret, both under `key`.
*/}}
{{- define "tantra.credentialRef" -}}
{{- $root := index . 0 -}}
{{- $source := index . 1 -}}
{{- $key := index . 3 -}}
{{- if $source.existingSecret -}}
name: {{ $source.existingSecret | quote }}
key: {{ $source.existingSecretKey | quote }}
{{- else if index . 2 -}}
name: {{ include "tantra.secretName" $root | quote }}
key: {{ $key | quote }}
{{- else -}}
name: {{ include "tantra.generatedSecretName" $root | quote }}
key: {{ $key | quote }}
{{- end }}
{{- end }}

{{- define "tantra.adminKeyRef" -}}
{{- include "tantra.credentialRef" (list . .Values.gateway.adminKey .Values.gateway.adminKey.value "admin-key") }}
{{- end }}

{{- define "tantra.postgresPasswordRef" -}}
{{- $pg := .Values.postgresql.bundled }}
{{- include "tantra.credentialRef" (list . $pg $pg.password "postgres-password") }}
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
