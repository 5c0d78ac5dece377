{{/* Resource names: the chart name, the full name, names with a suffix, the plain Job name. */}}

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

{{/*
The name of this release's plain Job (mode job): the steps and spec job.yaml renders, hashed.
*/}}
{{- define "migrator.plainJobNameOfRelease" -}}
{{- $steps := list "migrate" -}}
{{- if .Values.migrator.seed.enabled -}}
{{- $steps = append $steps "seed" -}}
{{- end -}}
{{- $spec := include "migrator.jobSpec" (dict "root" . "hook" false "steps" $steps) -}}
{{- include "migrator.plainJobName" (dict "root" . "jobSpec" $spec) -}}
{{- end -}}
