{{/*
What every engine pod shares, whichever workload runs it (a Deployment, a LeaderWorkerSet's leader
and workers, a RayService's head and workers): its resources with the GPUs, its volumes and their
mounts, and the pod-level settings. Each takes the root context.
*/}}

{{/* The engine container's resources: engine.resources, plus gpu.count GPUs when gpu.enabled. */}}
{{- define "tantra.engine.resources" -}}
{{- $en := .Values.engine }}
{{- $resources := deepCopy $en.resources }}
{{- if $en.gpu.enabled }}
{{- $_ := set $resources "limits" (merge (dict $en.gpu.resourceName $en.gpu.count) (default (dict) $resources.limits)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/* The engine container's mounts: the model read-only, caches under HOME and /tmp, /dev/shm. */}}
{{- define "tantra.engine.mounts" -}}
- name: models
  mountPath: /models
  readOnly: true
# vLLM, torch and Ray write caches under HOME and /tmp; the root filesystem stays read-only.
- name: home
  mountPath: /home/tantra
- name: tmp
  mountPath: /tmp
- name: shm
  mountPath: /dev/shm
- name: scripts
  mountPath: /scripts
  readOnly: true
{{- end }}

{{- define "tantra.engine.volumes" -}}
{{- $en := .Values.engine }}
{{- $model := $en.model }}
- name: scripts
  configMap:
    name: {{ include "tantra.component" (list . "scripts") }}
- name: models
  {{- if eq $model.storage.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ $model.storage.pvc.existingClaim | default (include "tantra.component" (list . "models")) }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $model.storage.emptyDir.sizeLimit }}
  {{- end }}
- name: home
  emptyDir:
    sizeLimit: 4Gi
- name: tmp
  emptyDir:
    sizeLimit: 4Gi
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ $en.shmSizeLimit }}
{{- end }}

{{/* Pod-level fields of every engine pod, up to (not including) its containers. */}}
{{- define "tantra.engine.podSettings" -}}
{{- $en := .Values.engine -}}
serviceAccountName: {{ include "tantra.serviceAccountName" . }}
automountServiceAccountToken: false
{{- include "tantra.imagePullSecrets" . }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $en.terminationGracePeriodSeconds }}
{{- with $en.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with $en.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $en.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $en.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $en.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The arguments of `python -m engine serve` (the image's entrypoint) for the chart's model; vLLM's
own options after `--`: tensor parallelism over one pod's GPUs, or, multi-node, tensor and
pipeline parallelism over the Ray cluster of the pod group.
*/}}
{{- define "tantra.engine.args" -}}
{{- $en := .Values.engine }}
{{- $model := $en.model }}
{{- $multi := $en.multiNode.enabled }}
- --model
- {{ printf "/models/%s" $model.dir | quote }}
- --served-model-name
- {{ $model.name | quote }}
- --host
- "0.0.0.0"
- --port
- {{ $en.port | quote }}
- --max-model-len
- {{ $en.maxModelLen | quote }}
- --kv-cache-gib
- {{ $en.kvCacheGib | quote }}
- --dtype
- {{ $en.dtype | quote }}
# Hosts vLLM itself may fetch media URLs from; none by default (the gateway sends data URLs).
- --allowed-media-domains
- {{ join "," $en.allowedMediaDomains | quote }}
{{- if $en.reasoningParser }}
# The answer's reasoning apart from its content (docs/orchestration.md, "Reasoning").
- --reasoning-parser
- {{ $en.reasoningParser | quote }}
{{- end }}
{{- if $en.gpu.enabled }}
- --device
- cuda
{{- end }}
{{- $tp := and $en.gpu.enabled (gt (int $en.gpu.count) 1) }}
{{- if or $en.extraArgs $tp $multi }}
# Everything after `--` reaches vLLM as is.
- "--"
{{- if $multi }}
# The model split over the group's GPUs: tensor parallelism within, pipeline stages across pods.
- --tensor-parallel-size
- {{ $en.multiNode.tensorParallel | quote }}
- --pipeline-parallel-size
- {{ $en.multiNode.pipelineParallel | quote }}
- --distributed-executor-backend
- ray
{{- else if $tp }}
# One shard of the model per GPU of this pod.
- --tensor-parallel-size
- {{ $en.gpu.count | quote }}
{{- end }}
{{- range $en.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The init step that puts the checkpoint at /models/<dir> unless that source is already there (a PVC
from an earlier pod), so only the first pod pays for the download: pods sharing the volume take
turns under a flock, and a changed source is fetched again (docker/fetch_model.py). Every pod of a
multi-node group needs the files: each loads its own shard.
*/}}
{{- define "tantra.engine.fetchInit" -}}
{{- $en := .Values.engine }}
{{- $model := $en.model }}
{{- if $model.source -}}
initContainers:
  - name: fetch-model
    image: {{ include "tantra.engineImage" . | quote }}
    imagePullPolicy: {{ .Values.imagePullPolicy }}
    securityContext:
      {{- toYaml .Values.containerSecurityContext | nindent 6 }}
    command: ["tantra-fetch-model", {{ $model.source | quote }}, {{ printf "/models/%s" $model.dir | quote }}]
    resources:
      {{- toYaml $model.fetchResources | nindent 6 }}
    {{- with $model.hfTokenSecret }}
    env:
      - name: HF_TOKEN
        valueFrom:
          secretKeyRef:
            name: {{ . | quote }}
            key: HF_TOKEN
    {{- end }}
    volumeMounts:
      - name: models
        mountPath: /models
      - name: home
        mountPath: /home/tantra
      - name: tmp
        mountPath: /tmp
{{- end }}
{{- end }}

{{/*
The serving container's stop and probes (the Deployment's engine, a LeaderWorkerSet's leader):
stopping, it leaves the endpoints, then waits for running and waiting requests to finish; vLLM's
own GET /health answers 200 once the model is loaded and the engine runs.
*/}}
{{- define "tantra.engine.serving" -}}
{{- $en := .Values.engine -}}
lifecycle:
  preStop:
    exec:
      command:
        - python
        - /scripts/engine_drain.py
        - --url
        - {{ printf "http://127.0.0.1:%v" $en.port | quote }}
        - --sleep
        - {{ $en.shutdown.preStopSleepSeconds | quote }}
        - --timeout
        - {{ $en.shutdown.drainSeconds | quote }}
startupProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: {{ $en.startupProbe.failureThreshold }}
livenessProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/*
Which pods the engine Services (and so discovery) reach: the serving pods only. A multi-node
group's leader, never its workers (their own component label); a RayService's pods whose Ray Serve
proxy KubeRay has marked ready (ray.io/serve).
*/}}
{{- define "tantra.engine.serviceSelector" -}}
{{ include "tantra.selectorLabels" (list . "engine") }}
{{- if and .Values.engine.multiNode.enabled (eq .Values.engine.multiNode.backend "rayservice") }}
ray.io/serve: "true"
{{- end }}
{{- end }}
