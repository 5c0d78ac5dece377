{{/* The pods that run the migrator on their own: the Jobs, the helm test pod, the NOTES rollback pod. */}}

{{/*
A migrator pod, as YAML with `metadata` (labels, annotations) and `spec`: STEPS (migrate, seed, status or
rollback) run in order, the last one as the main container and the ones before it as init containers (a
Job pod has one main container, which ends last), after the native sidecars and extra init containers of the
values. NAMES maps a step to its container's name (default: the step); SHARDS above 1 (an Indexed Job's pod)
tells each step how many pods share the tenants out. Scheduling, pull secrets, extra
volumes, labels and annotations come from the migrator's values, the same for every such pod.
Usage: include "migrator.migratorPod" (dict "root" $ "hook" true "steps" (list "migrate") "component" "migrate" "annotations" $dict)
*/}}
{{- define "migrator.migratorPod" -}}
{{- $root := .root -}}
{{- $m := $root.Values.migrator -}}
{{- $names := .names | default dict -}}
{{- $containers := list -}}
{{- $whos := list -}}
{{- range $step := .steps -}}
{{- $name := get $names $step | default $step -}}
{{- $containers = concat $containers (include "migrator.migratorContainer" (dict "root" $root "name" $name "step" $step "shards" $.shards) | fromYamlArray) -}}
{{- $whos = append $whos (include "migrator.stepCredentials" $step) -}}
{{- end -}}
{{- $init := concat
      (include "migrator.extraContainers" (dict "containers" $m.sidecars "sidecars" true) | fromYamlArray)
      (include "migrator.extraContainers" (dict "containers" $m.extraInitContainers) | fromYamlArray)
      (initial $containers) -}}
{{- $spec := dict
      "restartPolicy" "Never"
      "serviceAccountName" (include "migrator.podServiceAccountName" (dict "root" $root "hook" .hook))
      "automountServiceAccountToken" false
      "enableServiceLinks" false
      "securityContext" $root.Values.podSecurityContext
      "containers" (list (last $containers))
      "volumes" (include "migrator.volumes" (dict "root" $root "whos" (uniq $whos) "extra" (list $m.extraVolumes)) | fromYamlArray) -}}
{{- if $init -}}
{{- $_ := set $spec "initContainers" $init -}}
{{- end -}}
{{- include "migrator.scheduling" (dict "spec" $spec "values" $m "pullSecrets" $root.Values.imagePullSecrets) -}}
{{- $labels := merge (include "migrator.labels" (dict "root" $root "component" .component) | fromYaml) ($m.podLabels | default dict) -}}
{{- $annotations := merge (dict) (.annotations | default dict) ($m.podAnnotations | default dict) ($root.Values.commonAnnotations | default dict) -}}
{{- $metadata := dict "labels" $labels -}}
{{- if $annotations -}}
{{- $_ := set $metadata "annotations" $annotations -}}
{{- end -}}
{{- toYaml (dict "metadata" $metadata "spec" $spec) -}}
{{- end -}}

{{/*
Sets in SPEC (a pod spec dict) the scheduling and pulling fields that VALUES (migrator's or app's) give:
nodeSelector, tolerations, affinity, priorityClassName, topologySpreadConstraints, and PULLSECRETS.
Usage: include "migrator.scheduling" (dict "spec" $spec "values" .Values.app "pullSecrets" .Values.imagePullSecrets)
*/}}
{{- define "migrator.scheduling" -}}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "priorityClassName" "topologySpreadConstraints" -}}
{{- with get $.values $key -}}
{{- $_ := set $.spec $key . -}}
{{- end -}}
{{- end -}}
{{- with .pullSecrets -}}
{{- $_ := set $.spec "imagePullSecrets" . -}}
{{- end -}}
{{- end -}}
