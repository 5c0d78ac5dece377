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
Annotations of the hook copies of Secrets and ServiceAccounts: created before the migrate Job (a lower
weight) and deleted when the hook phase ends, whatever its outcome, or before the next phase creates them.
*/}}
{{- define "migrator.hookCopyAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ sub (int .Values.migrator.hook.weight) 10 | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
