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
{{- $spec := dict
      "backoffLimit" (int $job.backoffLimit)
      "activeDeadlineSeconds" (int $job.activeDeadlineSeconds)
      "template" (include "migrator.migratorPod" (dict "root" .root "hook" .hook "steps" .steps "component" "migrate" "annotations" $job.podAnnotations) | fromYaml) -}}
{{- if $rules -}}
{{- $_ := set $spec "podFailurePolicy" (dict "rules" $rules) -}}
{{- end -}}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) -}}
{{- $_ := set $spec "ttlSecondsAfterFinished" (int $job.ttlSecondsAfterFinished) -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}
