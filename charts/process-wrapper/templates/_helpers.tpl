{{/* The name of every object: the release name unless overridden. */}}
{{- define "pw.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "pw.labels" -}}
app.kubernetes.io/name: process-wrapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "pw.selector" -}}
app.kubernetes.io/name: process-wrapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The wrapper's -graceful-shutdown-deadline in seconds: the value given, or
terminationGracePeriodSeconds minus 5 s; it must stay below the grace
period, or kubelet SIGKILLs the container before the wrapper's own kill.
*/}}
{{- define "pw.deadlineSeconds" -}}
{{- $grace := int .Values.workload.terminationGracePeriodSeconds -}}
{{- if .Values.wrapper.gracefulShutdownDeadline -}}
{{- $d := .Values.wrapper.gracefulShutdownDeadline | toString | trimSuffix "s" | int -}}
{{- if or (not (hasSuffix "s" (toString .Values.wrapper.gracefulShutdownDeadline))) (lt $d 1) -}}
{{- fail (printf "wrapper.gracefulShutdownDeadline: want whole seconds such as 20s, got %q" (toString .Values.wrapper.gracefulShutdownDeadline)) -}}
{{- end -}}
{{- if ge $d $grace -}}
{{- fail (printf "wrapper.gracefulShutdownDeadline %ds must stay below workload.terminationGracePeriodSeconds (%d)" $d $grace) -}}
{{- end -}}
{{- $d -}}
{{- else -}}
{{- max 1 (sub $grace 5) -}}
{{- end -}}
{{- end -}}

{{- define "pw.sharedLockURL" -}}
{{- if .Values.wrapper.sharedLockURL -}}
{{- .Values.wrapper.sharedLockURL -}}
{{- else if .Values.sharedLock.enabled -}}
http://{{ include "pw.fullname" . }}-shared-lock:{{ .Values.sharedLock.port }}
{{- end -}}
{{- end -}}
