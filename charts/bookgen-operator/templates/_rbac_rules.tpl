{{/*
The operator's permissions, least privilege: each rule lists exactly the verbs the operator uses
(recorded by its end-to-end tests in operator/api-calls.json; tests/chart/test_rbac.py fails when a
recorded call is not granted here, and when a grant is neither recorded nor justified below).
No wildcards, no list/watch on Secrets (the operator only reads the Secrets it creates, by name).
*/}}

{{/* Rules in every namespace the operator manages BookGenQueues in. */}}
{{- define "bookgen-operator.namespacedRules" -}}
# The custom resources: kopf lists and watches them, patches finalizers/annotations and the status.
- apiGroups: [bookgen.io]
  resources: [bookgenqueues]
  verbs: [get, list, watch, patch]
- apiGroups: [bookgen.io]
  resources: [bookgenqueues/status]
  verbs: [patch]
# Children carry `blockOwnerDeletion: true` in their owner reference; under the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters) setting it
# needs `update` on the owner's finalizers subresource, or every create of a child is refused.
- apiGroups: [bookgen.io]
  resources: [bookgenqueues/finalizers]
  verbs: [update]
# kopf posts Kubernetes events about the handling of each BookGenQueue.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Children: Redis and the password Secrets (created once, read by name), Services.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
# Children are watched and listed by our labels (the reconciles read the watches' cache and re-list
# each queue's children every few minutes: child_cache.py) and deleted when no longer
# desired (a removed pool, Flower/beat off, external Redis, monitoring `never`). Secrets and the
# Redis data claims are never deleted by the operator.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# The exports claim (spec.exports.volumeClaim): read by name, created once, its labels repaired; never
# deleted (it outlives the queue, like the Redis data claims), never listed or watched.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create, patch]
# Worker pods: listed to find busy ones, annotated with pod-deletion-cost before scale-in.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# Optional monitoring objects, created when the prometheus-operator CRDs exist.
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, prometheusrules]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}

{{/* Cluster-scoped rules: kopf discovers CRDs (ours and prometheus-operator's) in every mode. */}}
{{- define "bookgen-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
# Namespaced mode: kopf lists and watches namespaces to learn which watched ones exist.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
