{{/* Migrator containers: their settings, identity, environment and arguments. */}}

{{/*
MIGRATOR_* settings; an empty value leaves the migrator's own default.
*/}}
{{- define "migrator.settingsEnv" -}}
{{- $c := .Values.migrator.config -}}
{{- $vars := dict
      "MIGRATOR_LOG_FORMAT" $c.logFormat
      "MIGRATOR_LOG_LEVEL" $c.logLevel
      "MIGRATOR_LOCK_TIMEOUT" $c.lockTimeout
      "MIGRATOR_DDL_LOCK_TIMEOUT" $c.ddlLockTimeout
      "MIGRATOR_DDL_RETRIES" $c.ddlRetries
      "MIGRATOR_STATEMENT_TIMEOUT" $c.statementTimeout
      "MIGRATOR_CONNECT_TIMEOUT" $c.connectTimeout -}}
{{- range $name := keys $vars | sortAlpha }}
{{- $value := get $vars $name }}
{{- if not (kindIs "invalid" $value) }}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Who runs the migration, for the migrator's history table: the pod's name and namespace (downward API) and
the image reference this release rendered.
*/}}
{{- define "migrator.identityEnv" -}}
- name: MIGRATOR_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: MIGRATOR_POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: MIGRATOR_IMAGE
  value: {{ include "migrator.migratorImage" . | quote }}
{{- end -}}

{{/*
The environment of every migrator container: the database, who runs it, the MIGRATOR_* settings, then
extraEnv.
Usage: include "migrator.migratorEnv" (dict "root" $ "hook" false)
*/}}
{{- define "migrator.migratorEnv" -}}
{{- $env := concat
      (include "migrator.databaseEnv" . | fromYamlArray)
      (include "migrator.identityEnv" .root | fromYamlArray)
      (include "migrator.settingsEnv" .root | fromYamlArray)
      (.root.Values.migrator.extraEnv | default list) -}}
{{- toYaml $env -}}
{{- end -}}

{{/*
Whether migrate, seed and wait accept a database at a revision this image does not know ("true" or
empty): migrator.allowNewer, or migrator.wait.allowNewer (its name in chart 0.1.0) when that is set.
*/}}
{{- define "migrator.allowNewer" -}}
{{- $old := .Values.migrator.wait.allowNewer -}}
{{- if ternary .Values.migrator.allowNewer $old (kindIs "invalid" $old) -}}true{{- end -}}
{{- end -}}

{{/*
The arguments of a migrator step: migrate, seed, wait or status --check (each with --allow-newer when allowed:
after `helm rollback` the database stays ahead, and `helm test` must still pass when the history proves it descends).
Usage: include "migrator.stepArgs" (dict "root" $ "step" "migrate")
*/}}
{{- define "migrator.stepArgs" -}}
{{- $args := list .step -}}
{{- if eq .step "wait" -}}
{{- $args = concat $args (list "--timeout" (toString .root.Values.migrator.wait.timeout)) -}}
{{- else if eq .step "status" -}}
{{- $args = append $args "--check" -}}
{{- end -}}
{{- if and (has .step (list "migrate" "seed" "wait" "status")) (include "migrator.allowNewer" .root) -}}
{{- $args = append $args "--allow-newer" -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}

{{/*
One migrator container (migrate, seed, wait or status), hardened, with the database environment.
Usage: include "migrator.migratorContainer" (dict "root" $ "name" "migrate" "step" "migrate" "hook" true)
*/}}
{{- define "migrator.migratorContainer" -}}
- name: {{ .name }}
  image: {{ include "migrator.migratorImage" .root | quote }}
  imagePullPolicy: {{ .root.Values.migrator.image.pullPolicy }}
  args:
    {{- include "migrator.stepArgs" . | nindent 4 }}
  env:
    {{- include "migrator.migratorEnv" . | nindent 4 }}
  resources:
    {{- toYaml .root.Values.migrator.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  # The migrator writes a one-line summary there; the log tail covers a crash before it could.
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    {{- include "migrator.volumeMounts" .root | trim | nindent 4 }}
{{- end -}}
