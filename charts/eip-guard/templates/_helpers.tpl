{{/* Names, labels and the few decisions several templates share. No random material:
     rendering twice gives the same bytes. */}}

{{- define "eip-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eip-guard.fullname" -}}
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

{{- define "eip-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eip-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eip-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Labels of every object but the component; the webhook's objects add theirs. */}}
{{- define "eip-guard.commonLabels" -}}
helm.sh/chart: {{ include "eip-guard.chart" . }}
app.kubernetes.io/name: {{ include "eip-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eip-guard
{{- end }}

{{- define "eip-guard.labels" -}}
{{ include "eip-guard.commonLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "eip-guard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "eip-guard.serviceAccountName" -}}
{{- include "eip-guard.fullname" . }}
{{- end }}

{{/* The ValidatingWebhookConfiguration's object name (RBAC names it by resourceName). */}}
{{- define "eip-guard.webhookConfigName" -}}
{{- include "eip-guard.fullname" . }}
{{- end }}

{{/* The Secret holding the serving certificate, whichever mode fills it. */}}
{{- define "eip-guard.tlsSecretName" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "self" }}
{{- default (printf "%s-tls" (include "eip-guard.fullname" .)) .Values.certificates.self.secretName }}
{{- else if eq $mode "cert-manager" }}
{{- printf "%s-tls" (include "eip-guard.fullname" .) }}
{{- else }}
{{- required "certificates.external.secretName is required when certificates.mode is external" .Values.certificates.external.secretName }}
{{- end }}
{{- end }}

{{/* "true" when the ValidatingAdmissionPolicy is rendered: forced on or off, or auto
     where the API server serves admissionregistration.k8s.io/v1 policies (1.30+). */}}
{{- define "eip-guard.vapEnabled" -}}
{{- $want := .Values.validatingAdmissionPolicy.enabled }}
{{- if eq (toString $want) "auto" }}
{{- .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" }}
{{- else }}
{{- $want }}
{{- end }}
{{- end }}

{{/* The kube-vip-cloud-provider ConfigMap as (namespace, name). */}}
{{- define "eip-guard.kubeVipConfigMapNamespace" -}}
{{- $parts := splitList "/" .Values.inventory.kubeVip.configMap }}
{{- first $parts }}
{{- end }}
