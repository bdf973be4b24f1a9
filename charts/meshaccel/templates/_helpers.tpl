{{/*
repository[:tag][@digest]; the tag defaults to the chart's appVersion, a
digest (when set) pins the exact image.
*/}}
{{- define "meshaccel.image" -}}
{{- $tag := .image.tag | default .chart.AppVersion -}}
{{- if .image.digest -}}
{{ .image.repository }}:{{ $tag }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "meshaccel.labels" -}}
app.kubernetes.io/part-of: meshaccel
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's pod (Deployment, uninstall hook, helm test): restricted
pod security, read-only root, no capabilities. */}}
{{- define "meshaccel.operatorPodSecurity" -}}
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
{{- end -}}
{{- define "meshaccel.operatorContainerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}
{{- define "meshaccel.operatorImage" -}}
image: {{ include "meshaccel.image" (dict "image" .Values.operator.image "chart" .Chart) | quote }}
imagePullPolicy: {{ .Values.operator.image.pullPolicy }}
{{- end -}}
{{- define "meshaccel.podNamespaceEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}
{{- define "meshaccel.pullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
