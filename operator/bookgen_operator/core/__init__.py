"""The decision core: the BookGenQueue spec, the manifests it implies, reconcile planning, status and the
autoscaler's decisions. No kopf and no I/O here (an import contract checks the first); the controller
(Kubernetes) and `bookgen up` (local) are two actuators of the same core."""
