{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "golem-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "golem-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "golem-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "golem-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "golem-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "golem-operator.labels" -}}
helm.sh/chart: {{ include "golem-operator.chart" . }}
{{ include "golem-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: golem-operator
{{- end }}

{{- define "golem-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "golem-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "golem-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "golem-operator.peeringName" -}}
{{- default (include "golem-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "golem-operator.pvcName" -}}
{{- default (printf "%s-yagna" (include "golem-operator.fullname" .)) .Values.yagna.sidecar.persistence.existingClaim }}
{{- end }}

{{/* Cross-field rules that values.schema.json cannot express readably. */}}
{{- define "golem-operator.validate" -}}
{{- if and .Values.standby.enabled (not .Values.peering.enabled) }}
{{- fail "standby.enabled needs peering.enabled: without peering both replicas would work at once" }}
{{- end }}
{{- if and .Values.standby.enabled (eq .Values.yagna.mode "sidecar") }}
{{- fail "standby.enabled needs yagna.mode=external: a sidecar's identity and data cannot be shared by two pods" }}
{{- end }}
{{- if and .Values.standby.enabled (ge (int .Values.standby.priority) (int .Values.peering.priority)) }}
{{- fail "standby.priority must be lower than peering.priority" }}
{{- end }}
{{- if eq .Values.yagna.mode "external" }}
{{- if not .Values.yagna.external.url }}
{{- fail "yagna.external.url is required when yagna.mode=external" }}
{{- end }}
{{- if not .Values.yagna.external.appKeySecret.name }}
{{- fail "yagna.external.appKeySecret.name is required when yagna.mode=external" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's pod template; called with (dict "root" $ "role" "primary"|"standby").
The standby differs only in its peering priority and has no yagna sidecar (external mode).
*/}}
{{- define "golem-operator.podTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $sidecar := eq $values.yagna.mode "sidecar" }}
{{- $priority := ternary $values.standby.priority $values.peering.priority (eq .role "standby") -}}
metadata:
  labels:
    {{- include "golem-operator.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: operator
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "golem-operator.serviceAccountName" $root }}
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $values.podSecurityContext | nindent 4 }}
  {{- if $sidecar }}
  initContainers:
    # A native sidecar: starts before the operator, whose start waits for the startup probe
    # (the app key file exists), and stops after it.
    - name: yagna
      image: {{ include "golem-operator.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      restartPolicy: Always
      command: ["/usr/local/bin/yagna-sidecar.sh"]
      env:
        - name: YAGNA_DATADIR
          value: /var/lib/yagna
        - name: YAGNA_API_URL
          value: "http://127.0.0.1:{{ $values.yagna.sidecar.apiPort }}"
        - name: GSB_URL
          value: tcp://127.0.0.1:7464
        - name: GOLEM_APPKEY_FILE
          value: /var/run/golem-operator/appkey
        - name: YAGNA_APPKEY_NAME
          value: {{ $values.yagna.sidecar.appKeyName | quote }}
        - name: YAGNA_PAYMENT_DRIVER
          value: {{ $values.golem.payment.driver | quote }}
        - name: YAGNA_PAYMENT_NETWORK
          value: {{ $values.golem.payment.network | quote }}
        - name: YAGNA_METRICS_PUSH
          value: {{ $values.yagna.sidecar.metricsPush | quote }}
        - name: YA_CONSENT_STATS
          value: deny
        {{- with $values.yagna.sidecar.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        exec:
          command: ["test", "-s", "/var/run/golem-operator/appkey"]
        periodSeconds: 2
        failureThreshold: 90
      # yagna listens on the pod's loopback only, out of the kubelet's reach: probe from inside.
      livenessProbe:
        exec:
          command: ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/{{ $values.yagna.sidecar.apiPort }}"]
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      securityContext:
        {{- toYaml $values.containerSecurityContext | nindent 8 }}
      resources:
        {{- toYaml $values.yagna.sidecar.resources | nindent 8 }}
      volumeMounts:
        - name: yagna-data
          mountPath: /var/lib/yagna
        - name: appkey
          mountPath: /var/run/golem-operator
        - name: yagna-tmp
          mountPath: /tmp
  {{- end }}
  containers:
    - name: operator
      image: {{ include "golem-operator.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      args:
        - run
        {{- if $values.operator.watchNamespaces }}
        {{- range $values.operator.watchNamespaces }}
        - --namespace={{ . }}
        {{- end }}
        {{- else }}
        - --all-namespaces
        {{- end }}
        {{- if $values.peering.enabled }}
        - --peering={{ include "golem-operator.peeringName" $root }}
        - --priority={{ $priority }}
        {{- else }}
        - --standalone
        {{- end }}
        {{- range $values.operator.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        {{- if $sidecar }}
        - name: GOLEM_URL
          value: "http://127.0.0.1:{{ $values.yagna.sidecar.apiPort }}"
        - name: GOLEM_APPKEY_FILE
          value: /var/run/golem-operator/appkey
        {{- else }}
        - name: GOLEM_URL
          value: {{ $values.yagna.external.url | quote }}
        - name: GOLEM_APPKEY_FILE
          value: /var/run/golem-operator/appkey
        {{- end }}
        - name: GOLEM_OPERATOR_NAMESPACES
          value: {{ join "," $values.operator.watchNamespaces | quote }}
        - name: GOLEM_OPERATOR_METRICS_PORT
          value: {{ $values.operator.metricsPort | quote }}
        - name: GOLEM_OPERATOR_HEALTH_PORT
          value: {{ $values.operator.healthPort | quote }}
        - name: GOLEM_OPERATOR_LOG_FORMAT
          value: {{ $values.operator.logFormat | quote }}
        - name: GOLEM_OPERATOR_LOG_LEVEL
          value: {{ $values.operator.logLevel | quote }}
        {{- if $values.golem.imageRegistry }}
        - name: GOLEM_OPERATOR_IMAGE_REGISTRY
          value: {{ $values.golem.imageRegistry | quote }}
        {{- end }}
        # spec.ports: the proxy listens on the pod's IP, and the Services' EndpointSlices name it.
        - name: GOLEM_OPERATOR_POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- with $values.operator.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $values.operator.metricsPort }}
          protocol: TCP
        - name: health
          containerPort: {{ $values.operator.healthPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml $values.operator.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml $values.operator.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml $values.containerSecurityContext | nindent 8 }}
      resources:
        {{- toYaml $values.operator.resources | nindent 8 }}
      volumeMounts:
        - name: appkey
          mountPath: /var/run/golem-operator
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
    {{- if $sidecar }}
    # In memory: the app key never touches a node's disk outside yagna's own volume.
    - name: appkey
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
    - name: yagna-tmp
      emptyDir:
        sizeLimit: 256Mi
    - name: yagna-data
      persistentVolumeClaim:
        claimName: {{ include "golem-operator.pvcName" $root }}
    {{- else }}
    - name: appkey
      secret:
        secretName: {{ $values.yagna.external.appKeySecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $values.yagna.external.appKeySecret.key }}
            path: appkey
    {{- end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* RBAC rules shared by the ClusterRole (cluster-wide) and each Role (namespaced). */}}
{{- define "golem-operator.namespacedRules" -}}
# GolemServices: watch them; patch only metadata (finalizer, kopf's annotations).
- apiGroups: [services.golem.network]
  resources: [golemservices]
  verbs: [get, list, watch, patch]
- apiGroups: [services.golem.network]
  resources: [golemservices/status]
  verbs: [get, patch]
# GolemServiceInstances: one per instance, created, recorded and removed by the operator.
- apiGroups: [services.golem.network]
  resources: [golemserviceinstances]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [services.golem.network]
  resources: [golemserviceinstances/status]
  verbs: [get, patch]
# Events about GolemServices (kopf posts core events; the operator events.k8s.io ones).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
# App keys (golemRef) and upload sources (secretKeyRef / configMapKeyRef): read one by name.
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get]
# spec.ports: a Service of the GolemService's name and its EndpointSlice, read by name,
# written by server-side apply (a patch that creates the object the first time needs create),
# deleted with the ports.
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, create, patch, delete]
{{- end }}
{{- define "golem-operator.scanRules" -}}
# kopf scans the CRDs at start and follows them.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# kopf observes namespaces even when given exact names (found by the RBAC test: without this
# it retries a forbidden namespace list forever). Names only; nothing inside them.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
