{{/* Image references. */}}

{{/*
An image reference from {registry, repository, tag, digest}; a digest wins over the tag, and
global.imageRegistry (a mirror) replaces the image's own registry.
Usage: include "migrator.image" (dict "image" .Values.migrator.image "key" "migrator.image" "global" .Values.global)
*/}}
{{- define "migrator.image" -}}
{{- $img := .image -}}
{{- if not (or $img.tag $img.digest) -}}
{{- fail (printf "%s: set tag or digest (an image without either is not deployable)" .key) -}}
{{- end -}}
{{- $registry := $img.registry -}}
{{- with .global -}}
{{- if .imageRegistry -}}
{{- $registry = .imageRegistry -}}
{{- end -}}
{{- end -}}
{{- $repo := $img.repository -}}
{{- if $registry -}}
{{- $repo = printf "%s/%s" $registry $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "migrator.migratorImage" -}}
{{- include "migrator.image" (dict "image" .Values.migrator.image "key" "migrator.image" "global" .Values.global) -}}
{{- end -}}

{{- define "migrator.appImage" -}}
{{- include "migrator.image" (dict "image" .Values.app.image "key" "app.image" "global" .Values.global) -}}
{{- end -}}
