{{/* vim: set filetype=mustache: */}}

{{/* ---------------------------------------------------------------------------------------------- names */}}

{{/*
The chart name, at most 63 characters (a DNS label, and the limit of a label value).
*/}}
{{- define "migrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name: RELEASE-CHART, or RELEASE alone when it already contains the chart name.
*/}}
{{- define "migrator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
FULLNAME-SUFFIX within 63 characters: the full name is cut, never the suffix, so that two names made
from one long release name stay distinct.
Usage: include "migrator.suffixedName" (dict "root" $ "suffix" "migrate")
*/}}
{{- define "migrator.suffixedName" -}}
{{- $max := sub 62 (len .suffix) | int -}}
{{- printf "%s-%s" (include "migrator.fullname" .root | trunc $max | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "migrator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The migrate hook's copies of the chart-made objects it references (see templates/secret.yaml).
*/}}
{{- define "migrator.hookName" -}}
{{- include "migrator.suffixedName" (dict "root" . "suffix" "migrate") -}}
{{- end -}}

{{/*
Name of the plain Job (mode `job`). A Job's pod template and podFailurePolicy are immutable, so the name
carries a hash of the whole rendered Job spec (retries, deadline, podFailurePolicy, pod template: images,
arguments, environment, volumes), of the database URL without its user information and of
migrator.job.runId: any change to what the Job does makes a new Job, and an unchanged release keeps its
finished one. Never hashed: a password or a Secret's content (the spec names Secrets, it does not hold them).
Usage: include "migrator.plainJobName" (dict "root" $ "jobSpec" $text)
*/}}
{{- define "migrator.plainJobName" -}}
{{- $db := urlParse .root.Values.database.url -}}
{{- $target := printf "%s://%s%s?%s" $db.scheme $db.host $db.path $db.query -}}
{{- $runId := "" -}}
{{- if not (kindIs "invalid" .root.Values.migrator.job.runId) -}}
{{- $runId = toString .root.Values.migrator.job.runId -}}
{{- end -}}
{{- $hash := printf "%s\n%s\n%s" .jobSpec $target $runId | sha256sum | trunc 10 -}}
{{- include "migrator.suffixedName" (dict "root" .root "suffix" (printf "migrate-%s" $hash)) -}}
{{- end -}}

{{/* --------------------------------------------------------------------------------------------- labels */}}

{{/*
Labels of every object. Usage: include "migrator.labels" (dict "root" $ "component" "app")
*/}}
{{- define "migrator.labels" -}}
helm.sh/chart: {{ include "migrator.chart" .root }}
{{ include "migrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "migrator.name" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The labels that selectors use: stable across upgrades, so they never include a version.
*/}}
{{- define "migrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations of an object: the common ones, then the object's own (a dict); nothing when empty.
Usage: include "migrator.annotations" (dict "root" $ "annotations" $dict "indent" 2)
*/}}
{{- define "migrator.annotations" -}}
{{- $all := merge (dict) (.annotations | default dict) (.root.Values.commonAnnotations | default dict) -}}
{{- if $all -}}
{{- printf "annotations:\n%s" (toYaml $all | indent 2) | nindent (int (default 2 .indent)) -}}
{{- end -}}
{{- end -}}

{{/*
Annotations of the hook copies of Secrets and ServiceAccounts: created before the migrate Job (a lower
weight) and deleted when the hook phase ends, whatever its outcome, or before the next phase creates them.
*/}}
{{- define "migrator.hookCopyAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ sub (int .Values.migrator.hook.weight) 10 | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/* --------------------------------------------------------------------------------------------- images */}}

{{/*
An image reference from {registry, repository, tag, digest}; a digest wins over the tag.
Usage: include "migrator.image" (dict "image" .Values.migrator.image "key" "migrator.image")
*/}}
{{- define "migrator.image" -}}
{{- $img := .image -}}
{{- if not (or $img.tag $img.digest) -}}
{{- fail (printf "%s: set tag or digest (an image without either is not deployable)" .key) -}}
{{- end -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}
{{- $repo = printf "%s/%s" $img.registry $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "migrator.migratorImage" -}}
{{- include "migrator.image" (dict "image" .Values.migrator.image "key" "migrator.image") -}}
{{- end -}}

{{- define "migrator.appImage" -}}
{{- include "migrator.image" (dict "image" .Values.app.image "key" "app.image") -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------ service account */}}

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

{{/* ----------------------------------------------------------------------------------- database */}}

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

{{/* ---------------------------------------------------------------------------- migrator containers */}}

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

{{/*
The pod template of a migrator Job: STEPS (a list of migrate, seed) run in order, the last one as the main
container and the ones before it as init containers (a Job pod has one main container, which ends last).
Usage: include "migrator.jobPodTemplate" (dict "root" $ "hook" true "steps" (list "migrate" "seed"))
*/}}
{{- define "migrator.jobPodTemplate" -}}
{{- $root := .root -}}
{{- $hook := .hook -}}
{{- $first := initial .steps -}}
{{- $last := last .steps -}}
metadata:
  labels:
    {{- include "migrator.labels" (dict "root" $root "component" "migrate") | nindent 4 }}
  {{- include "migrator.annotations" (dict "root" $root "annotations" $root.Values.migrator.job.podAnnotations "indent" 2) }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "migrator.podServiceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $first }}
  initContainers:
    {{- range $step := $first }}
    {{- include "migrator.migratorContainer" (dict "root" $root "name" $step "step" $step "hook" $hook) | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    {{- include "migrator.migratorContainer" (dict "root" $root "name" $last "step" $last "hook" $hook) | nindent 4 }}
  volumes:
    {{- include "migrator.volumes" . | trim | nindent 4 }}
{{- end -}}

{{/*
The Job spec shared by hook and plain modes: bounded retries, and no retry for exit codes that a retry
cannot fix (usage, configuration, revision errors; a migration left part-way). Evicted or preempted pods do
not use up the retries.
*/}}
{{- define "migrator.jobSpec" -}}
{{- $job := .root.Values.migrator.job -}}
backoffLimit: {{ $job.backoffLimit }}
activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $job.ttlSecondsAfterFinished }}
{{- end }}
podFailurePolicy:
  rules:
    {{- if $job.nonRetryableExitCodes }}
    {{- $codes := list }}
    {{- range $job.nonRetryableExitCodes }}
    {{- $codes = append $codes (int .) }}
    {{- end }}
    - action: FailJob
      onExitCodes:
        operator: In
        # The API wants the codes sorted and unique.
        values:
          {{- range $code := until 256 }}
          {{- if has $code $codes }}
          - {{ $code }}
          {{- end }}
          {{- end }}
    {{- end }}
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
template:
  {{- include "migrator.jobPodTemplate" . | nindent 2 }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- checkov */}}

{{/*
checkov skips, each with its reason, as annotations of the object that holds the pod spec (checkov reads
them there). Only the skips that the values make necessary are rendered.
*/}}
{{- define "migrator.checkovSkips" -}}
{{- if or (ne .Values.migrator.image.pullPolicy "Always") (ne .Values.app.image.pullPolicy "Always") }}
checkov.io/skip1: CKV_K8S_15=IfNotPresent by default, as images are pinned by tag or digest and images loaded into kind or an air-gapped node cannot be pulled; set pullPolicy Always where wanted
{{- end }}
{{- if not (and .Values.migrator.image.digest .Values.app.image.digest) }}
checkov.io/skip2: CKV_K8S_43=set migrator.image.digest and app.image.digest in production; a development build loaded into kind has no registry digest
{{- end }}
{{- if include "migrator.secretInEnv" . }}
checkov.io/skip3: CKV_K8S_35=the values ask for a Secret in the environment (existingSecret.urlKey, or passwordFile.enabled false); by default the password is a mounted file
{{- end }}
{{- if not (or .Values.podSecurityContext.runAsUser .Values.containerSecurityContext.runAsUser) }}
checkov.io/skip6: CKV_K8S_40=the values leave runAsUser to the platform (null, e.g. OpenShift's restricted SCC assigns a uid from the namespace's range); runAsNonRoot stays true
{{- end }}
{{- end -}}

{{/*
The same, for a pod that runs to completion (helm test): probes would only delay or kill a one-shot check.
*/}}
{{- define "migrator.checkovSkipsOneShot" -}}
{{ include "migrator.checkovSkips" . }}
checkov.io/skip4: CKV_K8S_8=a run-to-completion pod has no liveness to probe
checkov.io/skip5: CKV_K8S_9=a run-to-completion pod serves nothing, so it has no readiness
{{- end -}}
