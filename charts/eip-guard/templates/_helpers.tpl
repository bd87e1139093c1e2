{{/* Names, labels and the few decisions several templates share. No random material:
     rendering twice gives the same bytes. */}}

{{- define "eip-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Service takes this name, and the API server holds a Service's name to a DNS-1035
     label: Helm's release names may hold dots (made dashes here) and start with a digit
     (refused, with what to do). */}}
{{- define "eip-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $release := replace "." "-" .Release.Name }}
{{- if regexMatch "^[0-9]" $release }}
{{- fail (printf "release name %q starts with a digit, and the webhook's Service takes its name from it (a Service name must start with a letter): install under another name, or set fullnameOverride" .Release.Name) }}
{{- end }}
{{- if contains $name $release }}
{{- $release | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" $release $name | trunc 63 | trimSuffix "-" }}
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

{{/* A repository given with its tag or digest ("ghcr.io/x/eip-guard:1.0") would make a
     reference no runtime pulls ("...:1.0:0.1.0"), and the pods would sit in
     InvalidImageName. A registry's port ("host:5000/x") is no tag. Takes (list field value). */}}
{{- define "eip-guard.repository" -}}
{{- $field := index . 0 }}{{ $repo := index . 1 }}
{{- if regexMatch "@|:[^/]*$" $repo }}
{{- fail (printf "%s %q holds a tag or digest: give the repository alone, and the tag in %s.tag (the digest in image.digest)" $field $repo (trimSuffix ".repository" $field)) }}
{{- end }}
{{- $repo }}
{{- end }}

{{- define "eip-guard.image" -}}
{{- $repo := include "eip-guard.repository" (list "image.repository" .Values.image.repository) }}
{{- $ref := printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end }}
{{- $ref }}
{{- end }}

{{/* Milliseconds of a duration the schema let through: Go's (cert-manager: h, m, s) or
     Prometheus' (y, w, d, h, m, s, ms), whole numbers. "ms" goes first, so "m" and "s"
     then only find minutes and seconds. */}}
{{- define "eip-guard.durationMs" -}}
{{- $rest := toString . }}
{{- $ms := 0 }}
{{- range (list (list "ms" 1) (list "y" 31536000000) (list "w" 604800000) (list "d" 86400000) (list "h" 3600000) (list "m" 60000) (list "s" 1000)) }}
{{- $part := regexFind (printf "[0-9]+%s" (index . 0)) $rest }}
{{- if $part }}
{{- $ms = add $ms (mul (trimSuffix (index . 0) $part | atoi) (index . 1)) }}
{{- $rest = replace $part "" $rest }}
{{- end }}
{{- end }}
{{- $ms }}
{{- end }}

{{/* Bytes of a memory quantity the schema let through: a whole number with an optional
     decimal (k, M, G, T) or binary (Ki, Mi, Gi, Ti) suffix, or a plain number. */}}
{{- define "eip-guard.memoryBytes" -}}
{{- if kindIs "string" . }}
{{- $digits := regexFind "^[0-9]+" . }}
{{- $suffix := trimPrefix $digits . }}
{{- $scale := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- mul (atoi $digits) (get $scale $suffix) }}
{{- else }}
{{- int64 . }}
{{- end }}
{{- end }}

{{/* Fails the render when a container's memory request exceeds its limit (the API server
     would refuse the pod template). Called with (list "<values path>" <resources>). */}}
{{- define "eip-guard.checkMemory" -}}
{{- $where := index . 0 }}
{{- $requests := (index . 1).requests | default dict }}
{{- $limits := (index . 1).limits | default dict }}
{{- if and (hasKey $requests "memory") (hasKey $limits "memory") }}
{{- if gt (include "eip-guard.memoryBytes" $requests.memory | atoi) (include "eip-guard.memoryBytes" $limits.memory | atoi) }}
{{- $show := dict "request" $requests.memory "limit" $limits.memory }}
{{- range $k, $v := $show }}{{ if not (kindIs "string" $v) }}{{ $_ := set $show $k (int64 $v) }}{{ end }}{{ end }}
{{- fail (printf "%s.requests.memory (%v) exceeds %s.limits.memory (%v): Kubernetes refuses such a pod; raise the limit too" $where $show.request $where $show.limit) }}
{{- end }}
{{- end }}
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

{{/* Whether the can_reach ValidatingAdmissionPolicy is rendered: enabled, and the policy
     leaves can-reach-syntax at deny (a policy of warn or off must not be overruled by the
     API server itself). "true" or "false". */}}
{{- define "eip-guard.vapRendered" -}}
{{- $action := get (.Values.policy.rules | default dict) "can-reach-syntax" | default "deny" }}
{{- and (eq (include "eip-guard.vapEnabled" .) "true") (eq (toString $action) "deny") }}
{{- end }}

{{/* The kube-vip-cloud-provider ConfigMap as (namespace, name). */}}
{{- define "eip-guard.kubeVipConfigMapNamespace" -}}
{{- $parts := splitList "/" .Values.inventory.kubeVip.configMap }}
{{- first $parts }}
{{- end }}

{{/* Where eip-guard writes its Events (EVENT_NAMESPACE in app/kube/auditor.py and
     agent_api.py): `default`, where kubectl looks for those of cluster-scoped objects.
     Creating Events is granted there only, by a Role. */}}
{{- define "eip-guard.eventNamespace" -}}
default
{{- end }}

{{/* What both webhook entries share: where the webhook is and how it is called. Takes
     (dict "fullname" "bundle" "root"). self mode: the webhook patches caBundle itself;
     cert-manager: its cainjector does. The chart never sets it there, so `helm upgrade`
     leaves it alone. */}}
{{- define "eip-guard.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
matchPolicy: Equivalent
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
clientConfig:
  service:
    name: {{ .fullname }}
    namespace: {{ .root.Release.Namespace }}
    path: /validate-eip
    port: {{ .root.Values.service.port }}
  {{- with .bundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}

{{/* Fails the render on a label or annotation key the API server refuses (a qualified name:
     an optional lowercase DNS-subdomain prefix and '/', then a name of at most 63 letters,
     digits, '-', '_' and '.', a letter or digit at each end). The schema checks the values;
     a key it refuses is reported at '' (no path). Called with (list "<values path>" <map>). */}}
{{- define "eip-guard.checkKeys" -}}
{{- $where := index . 0 }}
{{- range $key, $_ := index . 1 | default dict }}
{{- $prefix := "" }}{{ $name := $key }}
{{- if contains "/" $key }}{{ $prefix = regexReplaceAll "/.*$" $key "" }}{{ $name = regexReplaceAll "^[^/]*/" $key "" }}{{ end }}
{{- if or (not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $name)) (and (contains "/" $key) (or (gt (len $prefix) 253) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $prefix)))) }}
{{- fail (printf "%s: %q is no valid key, which Kubernetes refuses: an optional prefix (a lowercase DNS name, then '/'), then at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit, e.g. example.com/team" $where $key) }}
{{- end }}
{{- end }}
{{- end }}
