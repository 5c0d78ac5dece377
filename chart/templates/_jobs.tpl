{{/* The migrator Jobs' spec, shared by hook and plain modes. */}}

{{/*
The Job spec shared by hook and plain modes: STEPS (migrate, then seed) in one pod, bounded by the deadline.

Every failure must reach the tool that waits for the Job, and they read a failed Job differently (see
chart/README.md, "Failures"): Helm 3's and Helm 4's hook wait, Helm 4's --wait, Argo CD and kstatus read the
Job's Failed condition; Helm 3's `--wait-for-jobs` reads `status.failed > backoffLimit` only. So by default
no failure is retried by the Job (backoffLimit 0: the first counted failure both fails the Job and exceeds
the limit), the migrator's own bounded waits being the retries, and the exit codes that a retry cannot fix
fail it at once whatever backoffLimit (FailJob, which counts the pod too). A pod that is evicted or
preempted (DisruptionTarget) is replaced without counting only in hook mode: were the deadline to expire
before its replacement started, the Job would fail with status.failed 0, which Helm 3's `--wait-for-jobs`
would take for a Job still running; hooks are read by their condition.
Usage: include "migrator.jobSpec" (dict "root" $ "hook" true "steps" (list "migrate"))
*/}}
{{- define "migrator.jobSpec" -}}
{{- $job := .root.Values.migrator.job -}}
{{- $rules := list -}}
{{- if $job.nonRetryableExitCodes -}}
{{- $codes := list -}}
{{- range $code := until 256 -}}
{{- range $job.nonRetryableExitCodes -}}
{{- if eq (int .) $code -}}
{{- $codes = append $codes $code -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The API wants the codes sorted and unique. */ -}}
{{- $rules = append $rules (dict "action" "FailJob" "onExitCodes" (dict "operator" "In" "values" (uniq $codes))) -}}
{{- end -}}
{{- if .hook -}}
{{- $rules = append $rules (dict "action" "Ignore" "onPodConditions" (list (dict "type" "DisruptionTarget" "status" "True"))) -}}
{{- end -}}
{{- $shards := int .root.Values.migrator.tenants.shards -}}
{{- $spec := dict
      "activeDeadlineSeconds" (int $job.activeDeadlineSeconds)
      "template" (include "migrator.migratorPod" (dict "root" .root "hook" .hook "steps" .steps "component" "migrate" "annotations" $job.podAnnotations "shards" $shards) | fromYaml) -}}
{{- if gt $shards 1 -}}
{{- include "migrator.indexedJob" (dict "spec" $spec "tenants" .root.Values.migrator.tenants) -}}
{{- else -}}
{{- $_ := set $spec "backoffLimit" (int $job.backoffLimit) -}}
{{- end -}}
{{- if $rules -}}
{{- $_ := set $spec "podFailurePolicy" (dict "rules" $rules) -}}
{{- end -}}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) -}}
{{- $_ := set $spec "ttlSecondsAfterFinished" (int $job.ttlSecondsAfterFinished) -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}


{{/*
Sets in SPEC (a Job spec dict) what makes the migrate Job an Indexed Job that shares the tenants out: one
completion per shard, each pod taking the tenants whose name hashes to its JOB_COMPLETION_INDEX (the Job
controller sets it in every container; the pod's MIGRATOR_TENANT_SHARDS says how many there are), retried per
shard (backoffLimitPerIndex, beta and on by default from Kubernetes 1.29, GA in 1.33): a pod that fails or
dies is replaced, and its replacement finds the tenants it finished at head (each tenant's lock and version
table: nothing runs twice). No backoffLimit: with a per-index limit it defaults to unlimited, and one shard's
failures must not fail the others. With a podFailurePolicy the Job controller replaces a pod only once it has
terminated (podReplacementPolicy Failed, the only value allowed then).
Usage: include "migrator.indexedJob" (dict "spec" $spec "tenants" .Values.migrator.tenants)
*/}}
{{- define "migrator.indexedJob" -}}
{{- $shards := int .tenants.shards -}}
{{- $_ := set .spec "completionMode" "Indexed" -}}
{{- $_ = set .spec "completions" $shards -}}
{{- $_ = set .spec "parallelism" (int (.tenants.parallelism | default $shards)) -}}
{{- $_ = set .spec "backoffLimitPerIndex" (int .tenants.backoffLimitPerIndex) -}}
{{- end -}}
