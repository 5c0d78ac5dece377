{{/* Labels and annotations of every object. */}}

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
Annotations of the hook copy of the egress NetworkPolicy (see networkpolicy.yaml): created before the
migrate Job (a lower weight), deleted when the hook phase ends or before the next phase creates it.
*/}}
{{- define "migrator.hookCopyAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ sub (int .Values.migrator.hook.weight) 10 | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{/*
Argo CD's sync wave of an object in job mode when migrator.job.syncWave is set: the Job's wave plus OFFSET
(-1: what the Job reads, which must exist before it; +1: the app, applied once the Job completed). Nothing
otherwise.
Usage: include "migrator.syncWaveAnnotations" (dict "root" $ "offset" -1) | fromYaml
*/}}
{{- define "migrator.syncWaveAnnotations" -}}
{{- $wave := .root.Values.migrator.job.syncWave -}}
{{- if and (eq .root.Values.migrator.mode "job") (not (kindIs "invalid" $wave)) -}}
argocd.argoproj.io/sync-wave: {{ add (int $wave) .offset | toString | quote }}
{{- end -}}
{{- end -}}

{{/*
The pod selector of the pods that run the migrator on their own (the Jobs, the test pod, the rollback pod).
*/}}
{{- define "migrator.migratorPodSelector" -}}
matchExpressions:
  - key: app.kubernetes.io/instance
    operator: In
    values:
      - {{ .Release.Name | quote }}
  - key: app.kubernetes.io/name
    operator: In
    values:
      - {{ include "migrator.name" . | quote }}
  - key: app.kubernetes.io/component
    operator: In
    values:
      - migrate
      - test
{{- end -}}

{{/*
Egress rules: DNS, the database, then networkPolicy.egress.extraRules. An empty peer list leaves `to` out,
which allows any address on those ports.
*/}}
{{- define "migrator.egressRules" -}}
{{- $e := .Values.networkPolicy.egress -}}
{{- $dns := dict "ports" $e.dnsPorts -}}
{{- with $e.dns -}}
{{- $_ := set $dns "to" . -}}
{{- end -}}
{{- $database := dict "ports" $e.databasePorts -}}
{{- with $e.database -}}
{{- $_ := set $database "to" . -}}
{{- end -}}
{{- toYaml (concat (list $dns $database) ($e.extraRules | default list)) -}}
{{- end -}}
