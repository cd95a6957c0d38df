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
{{- range (.Values.wrapper.config | fromYamlArray) -}}
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
http://{{ include "pw.fullname" . }}-shared-lock:{{ .Values.sharedLock.port }}
{{- end -}}
{{- end -}}
