{{/* The Secrets that hold the database credentials and the CA: which, and which keys. */}}

{{/*
Whether the chart makes the credentials Secret ("true" or empty).
*/}}
{{- define "migrator.makesDatabaseSecret" -}}
{{- if and .Values.database.password (not .Values.database.existingSecret.name) -}}true{{- end -}}
{{- end -}}

{{/*
The Secret holding the credentials; the hook Job reads the hook copy of a chart-made Secret.
Usage: include "migrator.databaseSecretName" (dict "root" $ "hook" true)
*/}}
{{- define "migrator.databaseSecretName" -}}
{{- if .root.Values.database.existingSecret.name -}}
{{- .root.Values.database.existingSecret.name -}}
{{- else if .hook -}}
{{- include "migrator.suffixedName" (dict "root" .root "suffix" "migrate-database") -}}
{{- else -}}
{{- include "migrator.suffixedName" (dict "root" .root "suffix" "database") -}}
{{- end -}}
{{- end -}}

{{/*
The key of the password in that Secret, or empty when the URL (or nothing) carries it.
*/}}
{{- define "migrator.databasePasswordKey" -}}
{{- if .Values.database.existingSecret.name -}}
{{- .Values.database.existingSecret.passwordKey -}}
{{- else if .Values.database.password -}}
password
{{- end -}}
{{- end -}}

{{- define "migrator.caSecretName" -}}
{{- if .root.Values.database.ssl.caSecret.name -}}
{{- .root.Values.database.ssl.caSecret.name -}}
{{- else if .hook -}}
{{- include "migrator.suffixedName" (dict "root" .root "suffix" "migrate-database-ca") -}}
{{- else -}}
{{- include "migrator.suffixedName" (dict "root" .root "suffix" "database-ca") -}}
{{- end -}}
{{- end -}}

{{- define "migrator.caSecretKey" -}}
{{- if .Values.database.ssl.caSecret.name -}}
{{- .Values.database.ssl.caSecret.key -}}
{{- else -}}
ca.crt
{{- end -}}
{{- end -}}

{{- define "migrator.hasCA" -}}
{{- if or .Values.database.ssl.ca .Values.database.ssl.caSecret.name -}}true{{- end -}}
{{- end -}}

{{/*
Whether a Secret value reaches a container through its environment (checkov CKV_K8S_35 then applies).
*/}}
{{- define "migrator.secretInEnv" -}}
{{- if or .Values.database.existingSecret.urlKey (and (include "migrator.databasePasswordKey" .) (not .Values.database.passwordFile.enabled)) -}}true{{- end -}}
{{- end -}}
