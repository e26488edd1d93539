{{/* Chart name, overridable with nameOverride. */}}
{{- define "dsb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or just <release> when it already contains the chart name.
Truncated to 63 characters (DNS-1123 label limit).
*/}}
{{- define "dsb.fullname" -}}
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

{{- define "dsb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "dsb.labels" -}}
helm.sh/chart: {{ include "dsb.chart" . }}
{{ include "dsb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dockersandbox
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "dsb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The activator's selector labels (another name: the operator's Service and PDB never select it). */}}
{{- define "dsb.activatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dsb.name" . }}-activator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: activator
{{- end }}

{{/* Labels on the activator's objects (not the operator's name: selectors of the operator's pods never match them). */}}
{{- define "dsb.activatorLabels" -}}
helm.sh/chart: {{ include "dsb.chart" . }}
{{ include "dsb.activatorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dockersandbox
{{- end }}

{{- define "dsb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dsb.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag or repository@digest (digest wins). */}}
{{- define "dsb.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* true when the operator is restricted to a list of namespaces. */}}
{{- define "dsb.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
RBAC rules for namespaced resources, used by the ClusterRole (all namespaces) or by one Role per
watched namespace. Only what the reconciler calls; see the comments for why each is needed.
*/}}
{{- define "dsb.namespacedRules" -}}
# The custom resource itself: watched, and deleted only when it expires with onExpiry: Delete (its
# spec is never written; its status is, below).
# Pools create their engine sandboxes ("create"), a claim takes one (a "patch" of its labels and
# owner under a resourceVersion precondition), and a rollout or scale-down deletes them.
- apiGroups: ["dockersandbox.dev"]
  resources: ["dockersandboxes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Status is written with server-side apply (a patch), only when it changed.
- apiGroups: ["dockersandbox.dev"]
  resources: ["dockersandboxes/status", "dockersandboxpools/status"]
  verbs: ["patch"]
# Warm pools: watched (their spec is never written).
- apiGroups: ["dockersandbox.dev"]
  resources: ["dockersandboxpools"]
  verbs: ["get", "list", "watch"]
# Owner references from a pool to its sandboxes, with blockOwnerDeletion.
- apiGroups: ["dockersandbox.dev"]
  resources: ["dockersandboxpools/finalizers"]
  verbs: ["update"]
# Needed to set blockOwnerDeletion on the children's owner references where the
# OwnerReferencesPermissionEnforcement admission plugin is enabled (e.g. OpenShift).
- apiGroups: ["dockersandbox.dev"]
  resources: ["dockersandboxes/finalizers"]
  verbs: ["update"]
# Children of a sandbox (Service, TLS Secrets, image cache PVC), applied with server-side apply:
# "patch", and "create" because an apply that creates is authorized as create. Never "update", and
# never "delete": they go with the sandbox through their owner references.
- apiGroups: [""]
  resources: ["services", "secrets", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The engine Pod: the same, plus "delete" to replace it when its spec changes (most pod fields are
# immutable) or to stop it when policy no longer allows it; "create" also covers the server-side
# dry run that checks a new pod before the running one is replaced.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The EndpointSlice of each sandbox's Service, which has no selector (a pod that copies the engine's
# labels never becomes its endpoint): applied like the other children. "delete" for the stale slices
# Kubernetes' controller made while a Service still had a selector (made by an earlier version).
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# ... and the Endpoints object Kubernetes' Endpoints controller made for such a Service, which its
# mirroring controller would otherwise copy into a slice with the addresses it names: delete only.
- apiGroups: [""]
  resources: ["endpoints"]
  verbs: ["delete"]
# Each engine's NetworkPolicy (who may reach port 2376, where nested containers may go): applied like
# the other children, going with the sandbox through its owner reference.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- if eq .Values.operator.engineProbe "port-forward" }}
# engineProbe=port-forward: the readiness probe reaches dockerd through the API server.
- apiGroups: [""]
  resources: ["pods/portforward"]
  verbs: ["create"]
{{- end }}
# Warning/Normal events on DockerSandbox objects.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
A CRD shipped with the chart, from a byte-equal copy of crds/ in files/ (made by
e2e/tools/sync-chart.sh), with helm.sh/resource-policy: keep and the chart's labels added.
Usage: include "dsb.crd" (list $ "files/crd.yaml")
*/}}
{{- define "dsb.crd" -}}
{{- $root := index . 0 }}
{{- $file := index . 1 }}
{{- $raw := $root.Files.Get $file }}
{{- if not $raw }}
{{- fail (printf "%s is missing from the chart: run e2e/tools/sync-chart.sh (or set crds.install=false)" $file) }}
{{- end }}
{{- $crd := fromYaml $raw }}
{{- if hasKey $crd "Error" }}
{{- fail (printf "%s does not parse: %s" $file $crd.Error) }}
{{- end }}
{{- $meta := $crd.metadata }}
{{- $_ := set $meta "annotations" (merge (dict "helm.sh/resource-policy" "keep") ($meta.annotations | default dict)) }}
{{- $_ := set $meta "labels" (merge (include "dsb.labels" $root | fromYaml) ($meta.labels | default dict)) }}
{{- toYaml $crd }}
{{- end }}
