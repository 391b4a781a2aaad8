{{/*
Cross-field checks values.schema.json cannot express: each a `fail` naming the values to change.
Included once, from configmap.yaml (rendered in every install).
*/}}
{{- define "tantra.validate" -}}
{{- $gw := .Values.gateway }}
{{- $en := .Values.engine }}
{{- if and $gw.autoscaling.enabled (gt (int $gw.autoscaling.minReplicas) (int $gw.autoscaling.maxReplicas)) }}
{{- fail (printf "gateway.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $gw.autoscaling.minReplicas $gw.autoscaling.maxReplicas) }}
{{- end }}
{{- if $gw.podDisruptionBudget.enabled }}
{{- $least := ternary $gw.autoscaling.minReplicas $gw.replicas $gw.autoscaling.enabled }}
{{- if ge (int $gw.podDisruptionBudget.minAvailable) (int $least) }}
{{- fail (printf "gateway.podDisruptionBudget.minAvailable (%v) must be below the gateway's least replica count (%v), or no node can ever be drained" $gw.podDisruptionBudget.minAvailable $least) }}
{{- end }}
{{- end }}
{{- if and (eq $en.strategy.type "Recreate") $en.strategy.rollingUpdate }}
{{- fail "engine.strategy: type Recreate takes no rollingUpdate; remove engine.strategy.rollingUpdate (set it to null when overriding the default)" }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- if not .Values.ingress.hosts }}
{{- fail "ingress.enabled is true but ingress.hosts is empty: name at least one host (with its paths)" }}
{{- end }}
{{- /* A host without paths: the schema's minItems. */}}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.metrics.serviceMonitor.enabled (not .Values.networkPolicy.metricsNamespaceSelector) }}
{{- fail "metrics.serviceMonitor.enabled with networkPolicy.enabled needs networkPolicy.metricsNamespaceSelector (the monitoring namespace's labels, e.g. {kubernetes.io/metadata.name: monitoring}); without it the NetworkPolicies block Prometheus's scrapes" }}
{{- end }}
{{- $shutdown := $en.shutdown }}
{{- $needed := add $shutdown.preStopSleepSeconds $shutdown.drainSeconds 10 }}
{{- if lt (int $en.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "engine.terminationGracePeriodSeconds (%v) must cover engine.shutdown's preStopSleepSeconds + drainSeconds + 10 s for vLLM to stop (%v)" $en.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- include "tantra.validateSettings" . }}
{{- end }}

{{/*
gateway.settings names against the gateway's Settings fields (files/settings.txt, written by
scripts/chart_settings.py and checked against gateway/settings/schema.py by the tests): the
gateway ignores an unknown TANTRA_* variable, so a misspelt setting would do nothing, silently.
*/}}
{{- define "tantra.validateSettings" -}}
{{- $known := splitList "\n" (.Files.Get "files/settings.txt") }}
{{- $unknown := list }}
{{- range $name, $_ := .Values.gateway.settings }}
{{- if not (has $name $known) }}
{{- $unknown = append $unknown $name }}
{{- end }}
{{- end }}
{{- if $unknown }}
{{- fail (printf "gateway.settings: %s not a setting of the gateway (gateway/settings/schema.py; docs/configuration.md lists them)" (join ", " $unknown)) }}
{{- end }}
{{- end }}
