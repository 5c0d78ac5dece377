{{/* The credentials of the app and of the migrator, the Secrets that hold them, and the CA. */}}

{{/*
Whether the migrator has credentials of its own ("true" or empty): migrator.database names any of them.
Without, the migrator uses database's, as the app does.
*/}}
{{- define "migrator.separateCredentials" -}}
{{- $m := .Values.migrator.database -}}
{{- if or $m.url $m.password $m.existingSecret.name $m.existingSecret.urlKey $m.existingSecret.passwordKey -}}true{{- end -}}
{{- end -}}

{{/*
The credentials WHO reaches the database with, as YAML: `key` (their values' path, for messages), `url`,
`secret` (the Secret holding the password or the whole URL, or empty), `passwordKey`, `urlKey`, `makes`
(the chart makes that Secret from a password in the values) and `volume` (the name of the mounted password
file's volume). WHO is "app" (the app container, `wait`, the helm test pod: database) or "migrator"
(migrate, seed, the rollback pod: migrator.database when it names any, else database).
Usage: include "migrator.credentials" (dict "root" $ "who" "migrator") | fromYaml
*/}}
{{- define "migrator.credentials" -}}
{{- $own := and (eq .who "migrator") (eq (include "migrator.separateCredentials" .root) "true") -}}
{{- $c := ternary .root.Values.migrator.database .root.Values.database $own -}}
{{- $makes := and (not (empty $c.password)) (empty $c.existingSecret.name) -}}
{{- $secret := "" -}}
{{- if $c.existingSecret.name -}}
{{- $secret = $c.existingSecret.name -}}
{{- else if $makes -}}
{{- $secret = include "migrator.suffixedName" (dict "root" .root "suffix" (ternary "migrator-database" "database" $own)) -}}
{{- end -}}
key: {{ ternary "migrator.database" "database" $own }}
url: {{ $c.url | quote }}
secret: {{ $secret | quote }}
passwordKey: {{ ternary "password" $c.existingSecret.passwordKey $makes | default "" | quote }}
urlKey: {{ $c.existingSecret.urlKey | quote }}
makes: {{ $makes }}
volume: {{ ternary "migrator-database-password" "database-password" $own }}
{{- end -}}

{{/*
Every set of credentials the release uses: the app's, and the migrator's when they are its own.
Usage: include "migrator.allCredentials" $ | fromYamlArray
*/}}
{{- define "migrator.allCredentials" -}}
{{- $all := list (include "migrator.credentials" (dict "root" . "who" "app") | fromYaml) -}}
{{- if include "migrator.separateCredentials" . -}}
{{- $all = append $all (include "migrator.credentials" (dict "root" . "who" "migrator") | fromYaml) -}}
{{- end -}}
{{- toYaml $all -}}
{{- end -}}

{{- define "migrator.caSecretName" -}}
{{- if .Values.database.ssl.caSecret.name -}}
{{- .Values.database.ssl.caSecret.name -}}
{{- else -}}
{{- include "migrator.suffixedName" (dict "root" . "suffix" "database-ca") -}}
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
{{- range $c := include "migrator.allCredentials" . | fromYamlArray -}}
{{- if or $c.urlKey (and $c.passwordKey (not $.Values.database.passwordFile.enabled)) -}}true{{- end -}}
{{- end -}}
{{- end -}}
