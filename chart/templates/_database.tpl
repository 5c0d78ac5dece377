{{/* How a container reaches the database: its environment, volumes and mounts. */}}

{{/*
The environment that reaches the database, the same for the migrator and the app: the URL (a plain value,
or a Secret's key), the password (a mounted file, or PGPASSWORD from the Secret) and the SSL settings.
Usage: include "migrator.databaseEnv" (dict "root" $ "hook" false)
*/}}
{{- define "migrator.databaseEnv" -}}
{{- $db := .root.Values.database -}}
{{- $secret := include "migrator.databaseSecretName" . -}}
{{- $passwordKey := include "migrator.databasePasswordKey" .root -}}
{{- if $db.existingSecret.urlKey }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $db.existingSecret.urlKey }}
{{- else }}
- name: DATABASE_URL
  value: {{ $db.url | quote }}
{{- end }}
{{- if $passwordKey }}
{{- if $db.passwordFile.enabled }}
- name: DATABASE_PASSWORD_FILE
  value: {{ printf "%s/password" $db.passwordFile.mountPath | quote }}
{{- else }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $passwordKey }}
{{- end }}
{{- end }}
{{- if $db.ssl.mode }}
- name: PGSSLMODE
  value: {{ $db.ssl.mode | quote }}
{{- else if include "migrator.hasCA" .root }}
- name: PGSSLMODE
  value: verify-full
{{- end }}
{{- if include "migrator.hasCA" .root }}
- name: PGSSLROOTCERT
  value: {{ printf "%s/ca.crt" $db.ssl.mountPath | quote }}
{{- end }}
{{- end -}}

{{/*
Volumes every container of the chart mounts: /tmp, and the password file and CA when configured.
Usage: include "migrator.volumes" (dict "root" $ "hook" false)
*/}}
{{- define "migrator.volumes" -}}
{{- $passwordKey := include "migrator.databasePasswordKey" .root }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- if and $passwordKey .root.Values.database.passwordFile.enabled }}
- name: database-password
  secret:
    secretName: {{ include "migrator.databaseSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ $passwordKey }}
        path: password
{{- end }}
{{- if include "migrator.hasCA" .root }}
- name: database-ca
  secret:
    secretName: {{ include "migrator.caSecretName" . }}
    defaultMode: 0444
    items:
      - key: {{ include "migrator.caSecretKey" .root }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "migrator.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and (include "migrator.databasePasswordKey" .) .Values.database.passwordFile.enabled }}
- name: database-password
  mountPath: {{ .Values.database.passwordFile.mountPath }}
  readOnly: true
{{- end }}
{{- if include "migrator.hasCA" . }}
- name: database-ca
  mountPath: {{ .Values.database.ssl.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}
