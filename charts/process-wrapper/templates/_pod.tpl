{{/* The pod: an init container installs the wrapper into an emptyDir; the
app container runs it as its entrypoint. */}}
{{- define "pw.pod" -}}
{{- $w := .Values.wrapper -}}
{{- $deadline := include "pw.deadlineSeconds" . -}}
metadata:
  labels:
    {{- include "pw.podLabels" (dict "root" . "component" "workload") | nindent 4 }}
    {{- with .Values.workload.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "pw.config" . | sha256sum }}
    {{- if .Values.scrape.annotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $w.httpPort | quote }}
    prometheus.io/path: {{ .Values.scrape.path | quote }}
    {{- end }}
    {{- with .Values.workload.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if eq .Values.workload.kind "Job" }}
  restartPolicy: {{ .Values.workload.jobRestartPolicy }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.workload.terminationGracePeriodSeconds }}
  {{- with .Values.workload.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- include "pw.imagePullSecrets" . | nindent 2 }}
  {{- if $w.termination.enabled }}
  serviceAccountName: {{ include "pw.fullname" . }}
  automountServiceAccountToken: true
  {{- end }}
  {{- with .Values.workload.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.workload.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.workload.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  initContainers:
    - name: install-process-wrapper
      image: {{ include "pw.image" (dict "root" . "image" $w.image) }}
      imagePullPolicy: {{ $w.imagePullPolicy }}
      # /install: an empty directory of the image (mode 1777), so that the
      # emptyDir hides nothing the init container needs (its own binary is
      # /process-wrapper/process-wrapper)
      args: ["-install", "/install"]
      {{- with $w.installer.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.installer.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - {name: process-wrapper, mountPath: /install}
  containers:
    - name: {{ .Values.app.name }}
      image: {{ .Values.app.image }}
      imagePullPolicy: {{ .Values.app.imagePullPolicy }}
      command: [{{ printf "%s/process-wrapper" $w.installDir | quote }}]
      args:
        - -config=/etc/process-wrapper/config.yaml
        - -graceful-shutdown-deadline={{ $deadline }}s
        - -http-address=0.0.0.0:{{ $w.httpPort }}
        {{- if $w.debug }}
        - -debug
        {{- end }}
        {{- if $w.controlSocket }}
        - -control-socket=/run/process-wrapper/control/socket
        {{- else }}
        - -control-socket=
        {{- end }}
        {{- if and $w.preemption.enabled $w.preemption.envoyDrain }}
        - -envoy-drain
        {{- end }}
        {{- with $w.pyroscopeURL }}
        - -pyroscope-url={{ . }}
        {{- end }}
        {{- with include "pw.sharedLockURL" . }}
        - -shared-lock-url={{ . }}
        {{- end }}
        {{- if .Values.sharedLock.tokenSecret }}
        - -shared-lock-token-file=/var/run/shared-lock/token
        {{- end }}
        {{- range $w.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        - {name: CONTAINER_NAME, value: {{ .Values.app.name | quote }}}
        - {name: METRICS_EXTRA_LABELS_FILE_PATH, value: /etc/podinfo/labels}
        - {name: METRICS_EXTRA_LABELS_FILE_EXCLUDE, value: {{ join "," $w.labelsFileExclude | quote }}}
        {{- if $w.metricsServerAddress }}
        - {name: METRICS_SERVER_ADDRESS, value: {{ $w.metricsServerAddress | quote }}}
        {{- else if .Values.mocks.metrics.enabled }}
        - {name: METRICS_SERVER_ADDRESS, value: {{ printf "%s:9999" (include "pw.name" (dict "root" . "suffix" "metrics-mock")) | quote }}}
        {{- end }}
        {{- with $w.extraLabels }}
        - {name: METRICS_JSON_EXTRA_LABELS, value: {{ toJson . | quote }}}
        {{- end }}
        {{- if $w.preemption.enabled }}
        - {name: HANDLE_PREEMPTION, value: "true"}
        {{- if $w.preemption.metadataURL }}
        - {name: METADATA_URL, value: {{ $w.preemption.metadataURL | quote }}}
        {{- else if .Values.mocks.metadata.enabled }}
        - {name: METADATA_URL, value: {{ printf "http://%s:8989/computeMetadata/v1/instance/preempted" (include "pw.name" (dict "root" . "suffix" "metadata-mock")) | quote }}}
        {{- end }}
        {{- with $w.preemption.envoyDrainURL }}
        - {name: ENVOY_DRAIN_URL, value: {{ . | quote }}}
        {{- end }}
        {{- end }}
        {{- if $w.termination.enabled }}
        - {name: HANDLE_TERMINATION, value: "true"}
        {{- with $w.termination.follow }}
        - {name: TERMINATION_FOLLOW_CONTAINERS, value: {{ join "," . | quote }}}
        {{- end }}
        {{- end }}
        {{- with .Values.app.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - {name: wrapper-http, containerPort: {{ $w.httpPort }}}
        {{- with .Values.app.ports }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # kubelet asks the wrapper, which knows every process (README "Sizing kubelet's probes")
      startupProbe:
        httpGet: {path: /readiness, port: wrapper-http}
        {{- toYaml $w.probes.startup | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readiness, port: wrapper-http}
        {{- if $w.preemption.enabled }}
        # preemption: GCE gives 30 s; notice within a second
        periodSeconds: 1
        failureThreshold: 1
        timeoutSeconds: {{ $w.probes.readiness.timeoutSeconds }}
        {{- else }}
        {{- toYaml $w.probes.readiness | nindent 8 }}
        {{- end }}
      livenessProbe:
        httpGet: {path: /liveness, port: wrapper-http}
        {{- toYaml (omit $w.probes.liveness "failureThreshold") | nindent 8 }}
        failureThreshold: {{ include "pw.livenessFailureThreshold" . }}
      {{- with .Values.app.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.app.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.app.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - {name: process-wrapper, mountPath: {{ $w.installDir | quote }}, readOnly: true}
        - {name: config, mountPath: /etc/process-wrapper, readOnly: true}
        - {name: podinfo, mountPath: /etc/podinfo, readOnly: true}
        {{- if .Values.sharedLock.tokenSecret }}
        - {name: shared-lock-token, mountPath: /var/run/shared-lock, readOnly: true}
        {{- end }}
        {{- if $w.controlSocket }}
        # the control socket's own emptyDir: the binary's stays read-only, as
        # a child able to write there could replace the next PID 1's binary
        - {name: control, mountPath: /run/process-wrapper}
        {{- end }}
    {{- with .Values.workload.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: process-wrapper
      emptyDir: {sizeLimit: 64Mi}
    {{- if $w.controlSocket }}
    - name: control
      emptyDir: {medium: Memory, sizeLimit: 1Mi}
    {{- end }}
    - name: config
      configMap: {name: {{ include "pw.name" (dict "root" . "suffix" "config") }}}
    - name: podinfo
      downwardAPI:
        items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
    {{- if .Values.sharedLock.tokenSecret }}
    - name: shared-lock-token
      secret: {secretName: {{ .Values.sharedLock.tokenSecret }}, items: [{key: token, path: token}]}
    {{- end }}
{{- end -}}
