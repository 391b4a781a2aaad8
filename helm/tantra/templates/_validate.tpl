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
{{- if $en.discovery.enabled }}
{{- if lt (float64 $shutdown.preStopSleepSeconds) (float64 $en.discovery.intervalSeconds) }}
{{- fail (printf "engine.shutdown.preStopSleepSeconds (%v) must be at least engine.discovery.intervalSeconds (%v): a terminating engine must stay up until every gateway has re-resolved the engines and stopped sending to it" $shutdown.preStopSleepSeconds $en.discovery.intervalSeconds) }}
{{- end }}
{{- end }}
{{- include "tantra.validateEngineScaling" . }}
{{- include "tantra.validateSettings" . }}
{{- end }}

{{/* Engine autoscaling and multi-node groups (engine.autoscaling, engine.multiNode). */}}
{{- define "tantra.validateEngineScaling" -}}
{{- $en := .Values.engine }}
{{- $as := $en.autoscaling }}
{{- $mn := $en.multiNode }}
{{- if $as.enabled }}
{{- if gt (int $as.minReplicas) (int $as.maxReplicas) }}
{{- fail (printf "engine.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $as.minReplicas $as.maxReplicas) }}
{{- end }}
{{- if eq (int $as.minReplicas) 0 }}
{{- if ne $as.backend "keda" }}
{{- fail "engine.autoscaling.minReplicas 0 (scale to zero) needs backend keda: an HPA never scales below 1" }}
{{- end }}
{{- if not $en.discovery.enabled }}
{{- fail "engine.autoscaling.minReplicas 0 (scale to zero) needs engine.discovery.enabled: the gateways hold a request for the first engine only for discovered engines" }}
{{- end }}
{{- end }}
{{- if and $mn.enabled (eq $mn.backend "rayservice") }}
{{- fail "engine.autoscaling with engine.multiNode.backend rayservice: a RayService has no scale subresource to autoscale; use backend lws, or Ray Serve's own autoscaling" }}
{{- end }}
{{- end }}
{{- if $mn.enabled }}
{{- if not $en.gpu.enabled }}
{{- fail "engine.multiNode.enabled needs engine.gpu.enabled: vLLM's tensor and pipeline parallelism split the model over GPUs" }}
{{- end }}
{{- $gpus := mul (int $mn.size) (int $en.gpu.count) }}
{{- $split := mul (int $mn.tensorParallel) (int $mn.pipelineParallel) }}
{{- if ne $gpus $split }}
{{- fail (printf "engine.multiNode: tensorParallel x pipelineParallel (%d x %d = %d) must equal size x engine.gpu.count (%d x %d = %d GPUs per group)" (int $mn.tensorParallel) (int $mn.pipelineParallel) $split (int $mn.size) (int $en.gpu.count) $gpus) }}
{{- end }}
{{- if and (eq $mn.backend "rayservice") (ne (int $en.replicas) 1) }}
{{- fail (printf "engine.replicas (%v) with engine.multiNode.backend rayservice must be 1: one RayService is one Ray cluster serving the model once" $en.replicas) }}
{{- end }}
{{- end }}
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
