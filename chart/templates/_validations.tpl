{{/* Checks of the values that the schema cannot express. */}}

{{/*
Checks that the values describe one consistent way to reach the database; each failure is one line that
names the values to change.
*/}}
{{- define "migrator.validateDatabase" -}}
{{- $db := .Values.database -}}
{{- if and $db.password $db.existingSecret.name -}}
{{- fail "database: set database.password or database.existingSecret.name, not both" -}}
{{- end -}}
{{- if and $db.existingSecret.name (not (or $db.existingSecret.urlKey $db.existingSecret.passwordKey)) -}}
{{- fail "database.existingSecret: set urlKey (the Secret holds the whole URL) or passwordKey (it holds the password, database.url the rest)" -}}
{{- end -}}
{{- if and (or $db.existingSecret.urlKey $db.existingSecret.passwordKey) (not $db.existingSecret.name) -}}
{{- fail "database.existingSecret: urlKey and passwordKey need database.existingSecret.name" -}}
{{- end -}}
{{- if not (or $db.url $db.existingSecret.urlKey) -}}
{{- fail "database: set database.url, or database.existingSecret.name with urlKey" -}}
{{- end -}}
{{- if $db.url -}}
{{- $u := urlParse $db.url -}}
{{- if or (contains ":" $u.userinfo) (regexMatch "(^|&)password=" $u.query) -}}
{{- fail "database.url must not carry a password (it is visible in the pod spec): put it in database.password or in database.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and $db.ssl.ca $db.ssl.caSecret.name -}}
{{- fail "database.ssl: set ca or caSecret.name, not both" -}}
{{- end -}}
{{- end -}}

{{/*
Mount paths: the API rejects two volumes mounted at one path, and no mount point can be made inside a
read-only Secret volume. Only the mounts the values make are checked (/tmp is in every container).
*/}}
{{- define "migrator.validateMounts" -}}
{{- $db := .Values.database -}}
{{- $mounts := list -}}
{{- if and (include "migrator.databasePasswordKey" .) $db.passwordFile.enabled -}}
{{- $mounts = append $mounts (dict "key" "database.passwordFile.mountPath" "path" (trimSuffix "/" $db.passwordFile.mountPath) "secret" true) -}}
{{- end -}}
{{- if include "migrator.hasCA" . -}}
{{- $mounts = append $mounts (dict "key" "database.ssl.mountPath" "path" (trimSuffix "/" $db.ssl.mountPath) "secret" true) -}}
{{- end -}}
{{- $mounts = append $mounts (dict "key" "/tmp (every container's writable emptyDir)" "path" "/tmp" "secret" false) -}}
{{- range $i, $a := $mounts -}}
{{- range $j, $b := $mounts -}}
{{- if and (lt $i $j) (eq $a.path $b.path) -}}
{{- fail (printf "%s and %s are both %s: a container cannot mount two volumes at one path; give each its own directory" $a.key $b.key $a.path) -}}
{{- end -}}
{{- if and (ne $i $j) $b.secret (hasPrefix (printf "%s/" $b.path) $a.path) -}}
{{- fail (printf "%s (%s) is inside %s (%s), a read-only Secret volume where no mount point can be made; use a directory outside it" $a.key $a.path $b.key $b.path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Migrator values that only make sense together.
*/}}
{{- define "migrator.validateMigrator" -}}
{{- if and .Values.migrator.serviceAccountName (eq .Values.migrator.mode "initContainer") -}}
{{- fail "migrator.serviceAccountName: in initContainer mode the migrator runs in the app pods, under serviceAccount.name; use mode hook or job for a separate migrator identity" -}}
{{- end -}}
{{- end -}}

{{/*
Every check of the values that the schema cannot express, each failing with one line that names the values
to change. Rendered (to nothing) by the Deployment, the Jobs, the Secrets, the test pod and NOTES: every
render runs it.
*/}}
{{- define "migrator.validate" -}}
{{- include "migrator.validateDatabase" . -}}
{{- include "migrator.validateMounts" . -}}
{{- include "migrator.validateMigrator" . -}}
{{- end -}}
