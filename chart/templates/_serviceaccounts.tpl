{{/* Which ServiceAccount each pod runs under. */}}

{{/*
The ServiceAccount of app pods (and so of their init containers).
*/}}
{{- define "migrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "migrator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Whether the hook Jobs run under the chart's hook copy of the release's ServiceAccount ("true" or empty): in
hook mode when the chart makes the account, unless migrator.serviceAccountName names one that exists
before the hooks. The copy exists only through the hook phase (see serviceaccount.yaml).
*/}}
{{- define "migrator.usesHookServiceAccount" -}}
{{- if and (eq .Values.migrator.mode "hook") .Values.serviceAccount.create (not .Values.migrator.serviceAccountName) -}}true{{- end -}}
{{- end -}}

{{/*
The ServiceAccount of a pod that runs the migrator on its own (the Jobs, the test pod, the rollback pod):
migrator.serviceAccountName when set (an account made before the release, e.g. bound to a cloud IAM
identity by its name); else in a hook Job the hook copy when the chart makes the account; else the release's.
Usage: include "migrator.podServiceAccountName" (dict "root" $ "hook" true)
*/}}
{{- define "migrator.podServiceAccountName" -}}
{{- if .root.Values.migrator.serviceAccountName -}}
{{- .root.Values.migrator.serviceAccountName -}}
{{- else if and .hook (include "migrator.usesHookServiceAccount" .root) -}}
{{- include "migrator.hookName" .root -}}
{{- else -}}
{{- include "migrator.serviceAccountName" .root -}}
{{- end -}}
{{- end -}}
