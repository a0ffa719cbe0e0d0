{{/* Chart name, overridable. */}}
{{- define "spin-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Cut at 55 characters so that the Service names built from it
("-webhook", "-metrics") stay valid 63-character DNS labels.
*/}}
{{- define "spin-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "spin-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spin-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spin-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spin-operator.labels" -}}
helm.sh/chart: {{ include "spin-operator.chart" . }}
{{ include "spin-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spin-operator
{{- end }}

{{- define "spin-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spin-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest pins it, otherwise the tag (default: appVersion). */}}
{{- define "spin-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The cluster DNS domain (kubernetesClusterDomain; the schema checks it). */}}
{{- define "spin-operator.clusterDomain" -}}
{{- .Values.kubernetesClusterDomain | default "cluster.local" }}
{{- end }}

{{- define "spin-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "spin-operator.fullname" .) }}
{{- end }}

{{- define "spin-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "spin-operator.fullname" .) }}
{{- end }}

{{- define "spin-operator.mutatingWebhookName" -}}
{{- printf "%s-mutating-webhook-configuration" (include "spin-operator.fullname" .) }}
{{- end }}

{{- define "spin-operator.validatingWebhookName" -}}
{{- printf "%s-validating-webhook-configuration" (include "spin-operator.fullname" .) }}
{{- end }}

{{/* The serving Certificate, named like its Secret (as in certs/cert-manager.yaml). */}}
{{- define "spin-operator.certificateName" -}}
{{- printf "%s-webhook-cert" (include "spin-operator.fullname" .) }}
{{- end }}

{{/*
Where the serving certificate comes from: "existing" (tls.existingSecret), "cert-manager",
or "self-signed" (the operator creates and rotates it). One place decides, every template asks.
*/}}
{{- define "spin-operator.tlsMode" -}}
{{- if .Values.tls.existingSecret }}existing
{{- else if .Values.certManager.enabled }}cert-manager
{{- else }}self-signed
{{- end }}
{{- end }}

{{/*
The objects the operator reads and writes by name (the leader Lease; the self-signed mode's
Secret and webhook configurations), keyed by the operator's default name for each (the names
files/permissions.json lists). The Deployment passes these names as `run` flags and the RBAC
template swaps them into resourceNames, so both follow the release name.
*/}}
{{- define "spin-operator.namedObjects" -}}
{{- dict
  "spin-operator-leader" (include "spin-operator.leaseName" .)
  "spin-operator-webhook-cert" (include "spin-operator.certSecretName" .)
  "spin-operator-mutating-webhook-configuration" (include "spin-operator.mutatingWebhookName" .)
  "spin-operator-validating-webhook-configuration" (include "spin-operator.validatingWebhookName" .)
  | toJson }}
{{- end }}

{{/* Name of the leader-election Lease: one per release, so operators sharing a namespace each
elect their own leader. */}}
{{- define "spin-operator.leaseName" -}}
{{- printf "%s-leader" (include "spin-operator.fullname" .) }}
{{- end }}

{{/* Name of the Secret holding tls.crt/tls.key. */}}
{{- define "spin-operator.certSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-webhook-cert" (include "spin-operator.fullname" .) }}
{{- end }}
{{- end }}

{{/* Mount path of the serving certificate (`--cert-dir`). */}}
{{- define "spin-operator.certDir" -}}
/var/run/spin-operator/certs
{{- end }}

{{/*
Annotations on the webhook configurations. The chart never renders caBundle (Helm 4 applies
server-side, and a field another writer keeps would conflict on every mode switch); it names the
one writer of this mode, so a pod of the previous mode stops writing during the switch's rollout:
the operator (self-signed: its own CA; secret: the CA file of tls.existingSecret) or cert-manager's
CA injector, which reads its own annotation.
*/}}
{{- define "spin-operator.webhookAnnotations" -}}
{{- $mode := include "spin-operator.tlsMode" . -}}
core.spinkube.dev/ca-bundle-source: {{ get (dict "existing" "secret" "cert-manager" "cert-manager" "self-signed" "self-signed") $mode }}
{{- if eq $mode "cert-manager" }}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "spin-operator.certificateName" .) }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding tls.caBundle, the CA of tls.existingSecret when its Secret has no ca.crt. */}}
{{- define "spin-operator.caConfigMapName" -}}
{{- printf "%s-webhook-ca-bundle" (include "spin-operator.fullname" .) }}
{{- end }}

{{/* Where the operator reads the CA it writes into caBundle (`--ca-bundle-file`, existing mode). */}}
{{- define "spin-operator.caBundleFile" -}}
{{- if .Values.tls.caBundle }}/var/run/spin-operator/ca/ca.crt
{{- else }}{{ include "spin-operator.certDir" . }}/ca.crt
{{- end }}
{{- end }}

{{/* clientConfig of one webhook; call with (dict "ctx" $ "path" "/...") */}}
{{- define "spin-operator.clientConfig" -}}
{{- $ctx := .ctx -}}
clientConfig:
  service:
    name: {{ include "spin-operator.webhookServiceName" $ctx }}
    namespace: {{ $ctx.Release.Namespace }}
    path: {{ .path }}
    port: {{ $ctx.Values.webhooks.service.port }}
{{- end }}

{{/*
Selectors, timeouts and match conditions of one webhook; call with (dict "ctx" $ "hook" <route>)
where <route> is the webhook's entry in files/webhooks/*.yaml.
*/}}
{{- define "spin-operator.webhookCommon" -}}
{{- $ctx := .ctx -}}
{{- $values := $ctx.Values.webhooks -}}
admissionReviewVersions:
  - v1
sideEffects: None
timeoutSeconds: {{ $values.timeoutSeconds }}
matchPolicy: Equivalent
namespaceSelector:
  {{- include "spin-operator.namespaceSelector" $ctx | nindent 2 }}
{{- with $values.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $conditions := list }}
{{- if $values.routeMatchConditions }}
{{- $conditions = .hook.matchConditions | default list }}
{{- end }}
{{- $conditions = concat $conditions $values.extraMatchConditions }}
{{- with $conditions }}
matchConditions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The namespaces this release's admission sees, as a namespaceSelector body: never kube-system, the
release namespace or webhooks.excludeNamespaces; only watchNamespaces when set; and
webhooks.namespaceSelectorExpressions. The webhooks and the ValidatingAdmissionPolicy bindings
share it, so both enforce in exactly the same namespaces.
*/}}
{{- define "spin-operator.namespaceSelector" -}}
{{- $values := .Values.webhooks -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (uniq (concat (list "kube-system" .Release.Namespace) $values.excludeNamespaces)) | nindent 6 }}
  {{- with include "spin-operator.watchNamespaces" . | fromJsonArray }}
  # watchNamespaces: the operator caches and reconciles only these.
  - key: kubernetes.io/metadata.name
    operator: In
    values:
      {{- toYaml . | nindent 6 }}
  {{- end }}
  {{- with $values.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The namespaces the operator watches (watchNamespaces, sorted and deduplicated), as a JSON array;
empty: cluster-wide. The Deployment's --watch-namespaces, the webhooks' namespaceSelector and
the per-namespace Roles all read this one list.
*/}}
{{- define "spin-operator.watchNamespaces" -}}
{{- $list := list }}
{{- range .Values.watchNamespaces | default list }}
{{- $ns := . | toString | trim }}
{{- if $ns }}
{{- $list = append $list $ns }}
{{- end }}
{{- end }}
{{- $list | uniq | sortAlpha | toJson }}
{{- end }}
