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
The environment of a migrator container: the database with WHO's credentials, who runs it, the MIGRATOR_*
settings, then extraEnv.
Usage: include "migrator.migratorEnv" (dict "root" $ "who" "migrator")
*/}}
{{- define "migrator.migratorEnv" -}}
{{- $env := concat
      (include "migrator.databaseEnv" (dict "root" .root "who" .who) | fromYamlArray)
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
Whose credentials a migrator step uses: the migrator's for the steps that change the schema or its data
(migrate, seed, rollback), the app's for those that only read (wait, status), so that separate credentials
keep DDL rights out of the app pods' `wait`.
*/}}
{{- define "migrator.stepCredentials" -}}
{{- ternary "migrator" "app" (has . (list "migrate" "seed" "rollback")) -}}
{{- end -}}

{{/*
One migrator container (migrate, seed, wait or status), hardened, with the database environment; in an
Indexed Job's pod (SHARDS above 1), how many pods share the tenants out.
Usage: include "migrator.migratorContainer" (dict "root" $ "name" "migrate" "step" "migrate" "shards" 1)
*/}}
{{- define "migrator.migratorContainer" -}}
{{- $who := include "migrator.stepCredentials" .step -}}
- name: {{ .name }}
  image: {{ include "migrator.migratorImage" .root | quote }}
  imagePullPolicy: {{ .root.Values.migrator.image.pullPolicy }}
  args:
    {{- include "migrator.stepArgs" . | nindent 4 }}
  env:
    {{- include "migrator.migratorEnv" (dict "root" .root "who" $who) | nindent 4 }}
    {{- if gt (int .shards) 1 }}
    {{- /* The pod's share is its JOB_COMPLETION_INDEX, which the Job controller adds to every container. */}}
    - name: MIGRATOR_TENANT_SHARDS
      value: {{ .shards | quote }}
    {{- end }}
  resources:
    {{- toYaml .root.Values.migrator.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  # The migrator writes a one-line summary there; the log tail covers a crash before it could.
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    {{- include "migrator.volumeMounts" (dict "root" .root "who" $who "extra" .root.Values.migrator.extraVolumeMounts) | nindent 4 }}
{{- end -}}

{{/*
Containers from the values (sidecars, extra init containers), as they are; SIDECARS ones get
`restartPolicy: Always`, which makes an init container a native sidecar: started before the containers
after it, kept running, and stopped once the pod's main containers ended, so that a Job still completes.
Usage: include "migrator.extraContainers" (dict "containers" .Values.migrator.sidecars "sidecars" true)
*/}}
{{- define "migrator.extraContainers" -}}
{{- $out := list -}}
{{- range $c := .containers | default list -}}
{{- if $.sidecars -}}
{{- $c = merge (dict "restartPolicy" "Always") $c -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
Whether the helm test pod is rendered ("true" or empty): migrator.test.enabled, or when null, in every mode
but job (see templates/tests/test-schema.yaml).
*/}}
{{- define "migrator.testEnabled" -}}
{{- $enabled := .Values.migrator.test.enabled -}}
{{- if ternary (ne .Values.migrator.mode "job") $enabled (kindIs "invalid" $enabled) -}}true{{- end -}}
{{- end -}}
