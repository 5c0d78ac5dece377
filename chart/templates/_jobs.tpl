{{/* The migrator Jobs' pod template and spec, shared by hook and plain modes. */}}

{{/*
The pod template of a migrator Job: STEPS (a list of migrate, seed) run in order, the last one as the main
container and the ones before it as init containers (a Job pod has one main container, which ends last).
Usage: include "migrator.jobPodTemplate" (dict "root" $ "hook" true "steps" (list "migrate" "seed"))
*/}}
{{- define "migrator.jobPodTemplate" -}}
{{- $root := .root -}}
{{- $hook := .hook -}}
{{- $first := initial .steps -}}
{{- $last := last .steps -}}
metadata:
  labels:
    {{- include "migrator.labels" (dict "root" $root "component" "migrate") | nindent 4 }}
  {{- include "migrator.annotations" (dict "root" $root "annotations" $root.Values.migrator.job.podAnnotations "indent" 2) }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "migrator.podServiceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $first }}
  initContainers:
    {{- range $step := $first }}
    {{- include "migrator.migratorContainer" (dict "root" $root "name" $step "step" $step "hook" $hook) | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    {{- include "migrator.migratorContainer" (dict "root" $root "name" $last "step" $last "hook" $hook) | nindent 4 }}
  volumes:
    {{- include "migrator.volumes" . | trim | nindent 4 }}
{{- end -}}

{{/*
The Job spec shared by hook and plain modes: bounded retries, and no retry for exit codes that a retry
cannot fix (usage, configuration, revision errors; a migration left part-way). Evicted or preempted pods do
not use up the retries.
*/}}
{{- define "migrator.jobSpec" -}}
{{- $job := .root.Values.migrator.job -}}
backoffLimit: {{ $job.backoffLimit }}
activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $job.ttlSecondsAfterFinished }}
{{- end }}
podFailurePolicy:
  rules:
    {{- if $job.nonRetryableExitCodes }}
    {{- $codes := list }}
    {{- range $job.nonRetryableExitCodes }}
    {{- $codes = append $codes (int .) }}
    {{- end }}
    - action: FailJob
      onExitCodes:
        operator: In
        # The API wants the codes sorted and unique.
        values:
          {{- range $code := until 256 }}
          {{- if has $code $codes }}
          - {{ $code }}
          {{- end }}
          {{- end }}
    {{- end }}
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
template:
  {{- include "migrator.jobPodTemplate" . | nindent 2 }}
{{- end -}}
