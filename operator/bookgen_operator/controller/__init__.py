"""The Kubernetes side: kopf handlers as glue over the core, the API client, leader election, the child
cache and the Kubernetes actuator of the autoscaler, with one OperatorContext passed through kopf's memo."""
