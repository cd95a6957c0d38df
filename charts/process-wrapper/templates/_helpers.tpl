{{/* The name of every object: the release name unless overridden, cut to
the 63 characters of a DNS label. */}}
{{- define "pw.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of an object with a suffix (dict "root" $ "suffix" "config"):
the full name is cut so that the whole stays within 63 characters. */}}
{{- define "pw.name" -}}
{{- $max := sub 62 (len .suffix) | int -}}
{{- printf "%s-%s" (include "pw.fullname" .root | trunc $max | trimSuffix "-") .suffix -}}
{{- end -}}

{{/* An image of the chart's: the value, with the chart's appVersion as its
tag when it names none (no tag after the last "/", no digest). */}}
{{- define "pw.image" -}}
{{- $last := last (splitList "/" .image) -}}
{{- if or (contains ":" $last) (contains "@" .image) -}}
{{- .image -}}
{{- else -}}
{{- printf "%s:%s" .image .root.Chart.AppVersion -}}
{{- end -}}
{{- end -}}

{{/* wrapper.config as YAML text: given as text, or as the list itself. */}}
{{- define "pw.config" -}}
{{- if kindIs "slice" .Values.wrapper.config -}}
{{- toYaml .Values.wrapper.config -}}
{{- else -}}
{{- .Values.wrapper.config -}}
{{- end -}}
{{- end -}}

{{- define "pw.labels" -}}
app.kubernetes.io/name: process-wrapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The labels of a pod: the selector's, then the chart's others, then
workload.podLabels (dict "root" $ "component" "workload"). */}}
{{- define "pw.podLabels" -}}
{{ include "pw.selector" (dict "Release" .root.Release "component" .component) }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end -}}

{{- define "pw.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "pw.selector" -}}
app.kubernetes.io/name: process-wrapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
How long the app container's preStop hook may take, in seconds: kubelet runs
it inside terminationGracePeriodSeconds, before its SIGTERM reaches the
wrapper. app.preStopSeconds, or the seconds of a preStop sleep action.
*/}}
{{- define "pw.preStopSeconds" -}}
{{- $l := .Values.app.lifecycle | default dict -}}
{{- if ne (toString .Values.app.preStopSeconds) "<nil>" -}}
{{- int .Values.app.preStopSeconds -}}
{{- else if and $l.preStop $l.preStop.sleep -}}
{{- int $l.preStop.sleep.seconds -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/*
The wrapper's -graceful-shutdown-deadline in seconds: the value given, or
terminationGracePeriodSeconds minus the preStop hook's time minus 5 s; it
must stay below what is left of the grace period after the preStop hook, or
kubelet SIGKILLs the container before the wrapper's own kill.
*/}}
{{- define "pw.deadlineSeconds" -}}
{{- $grace := int .Values.workload.terminationGracePeriodSeconds -}}
{{- $pre := int (include "pw.preStopSeconds" .) -}}
{{- $left := sub $grace $pre -}}
{{- if .Values.wrapper.gracefulShutdownDeadline -}}
{{- $d := .Values.wrapper.gracefulShutdownDeadline | toString | trimSuffix "s" | int -}}
{{- if or (not (hasSuffix "s" (toString .Values.wrapper.gracefulShutdownDeadline))) (lt $d 1) -}}
{{- fail (printf "wrapper.gracefulShutdownDeadline: want whole seconds such as 20s, got %q" (toString .Values.wrapper.gracefulShutdownDeadline)) -}}
{{- end -}}
{{- if ge $d $left -}}
{{- fail (printf "wrapper.gracefulShutdownDeadline %ds must stay below workload.terminationGracePeriodSeconds (%d) less the preStop hook's %d s" $d $grace $pre) -}}
{{- end -}}
{{- $d -}}
{{- else -}}
{{- if lt $left 6 -}}
{{- fail (printf "workload.terminationGracePeriodSeconds (%d) less the preStop hook's %d s leaves the wrapper under 1 s to drain" $grace $pre) -}}
{{- end -}}
{{- sub $left 5 -}}
{{- end -}}
{{- end -}}

{{/*
The seconds kubelet's liveness probe on /liveness must leave the wrapper to
heal one process (README "Sizing kubelet's probes"): the longest liveness
window of a process in wrapper.config (periodSeconds x failureThreshold,
10 x 3 by default), plus its stop time (the deadline), plus 1 s.
*/}}
{{- define "pw.healSeconds" -}}
{{- $window := 0 -}}
{{- $procs := include "pw.config" . | fromYamlArray -}}
{{- if and (eq (len $procs) 1) (kindIs "string" (index $procs 0)) (hasPrefix "error" (index $procs 0)) -}}
{{- fail (printf "wrapper.config: want the wrapper's config, a YAML list of processes: %s" (index $procs 0)) -}}
{{- end -}}
{{- range $procs -}}
{{- if and (kindIs "map" .) .liveness -}}
{{- $w := mul (int (.liveness.periodSeconds | default 10)) (int (.liveness.failureThreshold | default 3)) -}}
{{- if gt (int $w) $window -}}{{- $window = int $w -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- add $window (include "pw.deadlineSeconds" .) 1 -}}
{{- end -}}

{{/* kubelet's liveness failureThreshold: the value given, checked, or the
least that leaves the wrapper its healing time, plus one period. */}}
{{- define "pw.livenessFailureThreshold" -}}
{{- $p := .Values.wrapper.probes.liveness -}}
{{- $period := int ($p.periodSeconds | default 10) -}}
{{- $need := int (include "pw.healSeconds" .) -}}
{{- if $p.failureThreshold -}}
{{- if le (mul $period (int $p.failureThreshold)) $need -}}
{{- fail (printf "wrapper.probes.liveness: periodSeconds x failureThreshold (%d x %d) must exceed the %d s the wrapper needs to heal one process (its longest liveness window + the %ss deadline + 1 s)" $period (int $p.failureThreshold) $need (include "pw.deadlineSeconds" .)) -}}
{{- end -}}
{{- int $p.failureThreshold -}}
{{- else -}}
{{- add (div (add $need $period -1) $period) 1 -}}
{{- end -}}
{{- end -}}

{{- define "pw.sharedLockURL" -}}
{{- if .Values.wrapper.sharedLockURL -}}
{{- .Values.wrapper.sharedLockURL -}}
{{- else if .Values.sharedLock.enabled -}}
http://{{ include "pw.name" (dict "root" . "suffix" "shared-lock") }}:{{ .Values.sharedLock.port }}
{{- end -}}
{{- end -}}
