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
The ServiceAccount of a pod that runs the migrator on its own (the Jobs, the test pod, the rollback pod):
migrator.serviceAccountName when set (an account made before the release, e.g. bound to a cloud IAM
identity by its name); else the release's, except in a hook Job when the chart makes that account: the hooks
run before it exists, and a copy made for them could outlive the hook phase, so they run under `default`.
Usage: include "migrator.podServiceAccountName" (dict "root" $ "hook" true)
*/}}
{{- define "migrator.podServiceAccountName" -}}
{{- if .root.Values.migrator.serviceAccountName -}}
{{- .root.Values.migrator.serviceAccountName -}}
{{- else if and .hook .root.Values.serviceAccount.create -}}
default
{{- else -}}
{{- include "migrator.serviceAccountName" .root -}}
{{- end -}}
{{- end -}}
