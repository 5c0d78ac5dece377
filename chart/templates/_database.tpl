{{/* How a container reaches the database: its environment, volumes and mounts. */}}

{{/*
The environment that reaches the database with WHO's credentials (see migrator.credentials): the URL (a
plain value, or a Secret's key), the password (a mounted file, or PGPASSWORD from the Secret) and the SSL
settings, which the app and the migrator share.
Usage: include "migrator.databaseEnv" (dict "root" $ "who" "app")
*/}}
{{- define "migrator.databaseEnv" -}}
{{- $db := .root.Values.database -}}
{{- $c := include "migrator.credentials" . | fromYaml -}}
{{- if $c.urlKey }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $c.secret }}
      key: {{ $c.urlKey }}
{{- else }}
- name: DATABASE_URL
  value: {{ $c.url | quote }}
{{- end }}
{{- if $c.passwordKey }}
{{- if $db.passwordFile.enabled }}
- name: DATABASE_PASSWORD_FILE
  value: {{ printf "%s/password" $db.passwordFile.mountPath | quote }}
{{- else }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.secret }}
      key: {{ $c.passwordKey }}
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
The volumes of a pod: /tmp, the password file of each of WHOS' credentials and the CA when configured,
then the EXTRA volumes (lists from the values), the first of a name winning.
Usage: include "migrator.volumes" (dict "root" $ "whos" (list "app" "migrator") "extra" (list $.Values.app.extraVolumes))
*/}}
{{- define "migrator.volumes" -}}
{{- $root := .root -}}
{{- $volumes := list (dict "name" "tmp" "emptyDir" (dict "sizeLimit" $root.Values.tmpSizeLimit)) -}}
{{- if $root.Values.database.passwordFile.enabled -}}
{{- range $who := .whos -}}
{{- $c := include "migrator.credentials" (dict "root" $root "who" $who) | fromYaml -}}
{{- if $c.passwordKey -}}
{{- $items := list (dict "key" $c.passwordKey "path" "password") -}}
{{- $volumes = append $volumes (dict "name" $c.volume "secret" (dict "secretName" $c.secret "defaultMode" 288 "items" $items)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "migrator.hasCA" $root -}}
{{- $items := list (dict "key" (include "migrator.caSecretKey" $root) "path" "ca.crt") -}}
{{- $volumes = append $volumes (dict "name" "database-ca" "secret" (dict "secretName" (include "migrator.caSecretName" $root) "defaultMode" 292 "items" $items)) -}}
{{- end -}}
{{- range $list := .extra -}}
{{- $volumes = concat $volumes ($list | default list) -}}
{{- end -}}
{{- $seen := dict -}}
{{- $unique := list -}}
{{- range $v := $volumes -}}
{{- if not (hasKey $seen $v.name) -}}
{{- $_ := set $seen $v.name true -}}
{{- $unique = append $unique $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $unique -}}
{{- end -}}

{{/*
The mounts of a container with WHO's credentials: /tmp, its password file, the CA, then EXTRA (a list).
Usage: include "migrator.volumeMounts" (dict "root" $ "who" "app" "extra" $.Values.app.extraVolumeMounts)
*/}}
{{- define "migrator.volumeMounts" -}}
{{- $db := .root.Values.database -}}
{{- $c := include "migrator.credentials" . | fromYaml -}}
{{- $mounts := list (dict "name" "tmp" "mountPath" "/tmp") -}}
{{- if and $c.passwordKey $db.passwordFile.enabled -}}
{{- $mounts = append $mounts (dict "name" $c.volume "mountPath" $db.passwordFile.mountPath "readOnly" true) -}}
{{- end -}}
{{- if include "migrator.hasCA" .root -}}
{{- $mounts = append $mounts (dict "name" "database-ca" "mountPath" $db.ssl.mountPath "readOnly" true) -}}
{{- end -}}
{{- toYaml (concat $mounts (.extra | default list)) -}}
{{- end -}}
