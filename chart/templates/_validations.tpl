{{/* Checks of the values that the schema cannot express. */}}

{{/*
Checks that a credentials block (database, or migrator.database when it names any) describes one consistent
way to reach the database; each failure is one line that names the values to change.
Usage: include "migrator.validateCredentials" (dict "values" .Values.database "key" "database")
*/}}
{{- define "migrator.validateCredentials" -}}
{{- $c := .values -}}
{{- $k := .key -}}
{{- if and $c.password $c.existingSecret.name -}}
{{- fail (printf "%s: set %s.password or %s.existingSecret.name, not both" $k $k $k) -}}
{{- end -}}
{{- if and $c.existingSecret.name (not (or $c.existingSecret.urlKey $c.existingSecret.passwordKey)) -}}
{{- fail (printf "%s.existingSecret: set urlKey (the Secret holds the whole URL) or passwordKey (it holds the password, %s.url the rest)" $k $k) -}}
{{- end -}}
{{- if and (or $c.existingSecret.urlKey $c.existingSecret.passwordKey) (not $c.existingSecret.name) -}}
{{- fail (printf "%s.existingSecret: urlKey and passwordKey need %s.existingSecret.name" $k $k) -}}
{{- end -}}
{{- if not (or $c.url $c.existingSecret.urlKey) -}}
{{- fail (printf "%s: set %s.url, or %s.existingSecret.name with urlKey" $k $k $k) -}}
{{- end -}}
{{- if $c.url -}}
{{- $u := urlParse $c.url -}}
{{- if or (contains ":" $u.userinfo) (regexMatch "(^|&)password=" $u.query) -}}
{{- fail (printf "%s.url must not carry a password (it is visible in the pod spec): put it in %s.password or in %s.existingSecret" $k $k $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "migrator.validateDatabase" -}}
{{- include "migrator.validateCredentials" (dict "values" .Values.database "key" "database") -}}
{{- if include "migrator.separateCredentials" . -}}
{{- include "migrator.validateCredentials" (dict "values" .Values.migrator.database "key" "migrator.database") -}}
{{- end -}}
{{- if and .Values.database.ssl.ca .Values.database.ssl.caSecret.name -}}
{{- fail "database.ssl: set ca or caSecret.name, not both" -}}
{{- end -}}
{{- end -}}

{{/*
Hook mode: the hook Jobs run before any of the release's objects exist, and no copy of a Secret is made for
them (see secret.yaml), so what they read must exist before the release.
*/}}
{{- define "migrator.validateHookInputs" -}}
{{- if eq .Values.migrator.mode "hook" -}}
{{- $c := include "migrator.credentials" (dict "root" . "who" "migrator") | fromYaml -}}
{{- if $c.makes -}}
{{- fail (printf "%s.password: in hook mode the migrate Job runs before the release's objects exist, and the chart makes no copy of a Secret for it (a copy could outlive the release step); keep the password in a Secret made before the release and name it in %s.existingSecret, or use migrator.mode job" $c.key $c.key) -}}
{{- end -}}
{{- if .Values.database.ssl.ca -}}
{{- fail "database.ssl.ca: in hook mode the migrate Job runs before the release's objects exist, and the chart makes no copy of a Secret for it; keep the CA in a Secret made before the release and name it in database.ssl.caSecret, or use migrator.mode job" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Mount paths: the API rejects two volumes mounted at one path, and no mount point can be made inside a
read-only Secret volume. Only the mounts the values make are checked (/tmp is in every container).
*/}}
{{- define "migrator.validateMounts" -}}
{{- $db := .Values.database -}}
{{- $mounts := list -}}
{{- $passwordKeys := list -}}
{{- range $c := include "migrator.allCredentials" . | fromYamlArray -}}
{{- $passwordKeys = append $passwordKeys $c.passwordKey -}}
{{- end -}}
{{- if and (compact $passwordKeys) $db.passwordFile.enabled -}}
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
{{- if and .Values.networkPolicy.egress.enabled (not .Values.networkPolicy.enabled) -}}
{{- fail "networkPolicy.egress.enabled: set networkPolicy.enabled too (it renders every NetworkPolicy of the chart)" -}}
{{- end -}}
{{- if and (gt (int .Values.migrator.tenants.shards) 1) (eq .Values.migrator.mode "initContainer") -}}
{{- fail (printf "migrator.tenants.shards: %v pods can share the tenants out only as an Indexed Job: use mode hook or job (in initContainer mode every app pod migrates every tenant, one after the other under each tenant's lock)" .Values.migrator.tenants.shards) -}}
{{- end -}}
{{- if hasKey (.Values.migrator.job.annotations | default dict) "argocd.argoproj.io/sync-wave" -}}
{{- fail "migrator.job.annotations: set the Job's Argo CD sync wave with migrator.job.syncWave, which also moves the Secrets, ServiceAccount and NetworkPolicies it reads to an earlier wave (a Job in a wave before them never starts, and the sync waits forever)" -}}
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
{{- include "migrator.validateHookInputs" . -}}
{{- include "migrator.validateMigrator" . -}}
{{- end -}}
