{{/* checkov skips, each with its reason. */}}

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
