{{/* Image references. */}}

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
