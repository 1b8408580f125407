"""The cluster add-ons every real cluster has: CoreDNS behind the `kube-dns` Service, and a volume
provisioner (rancher's local-path-provisioner) as the default StorageClass, so a claim such as
Redis's is bound and outlives its pod. Both run as pods of images made here (scripts/build-images.sh).

CoreDNS has no `forward` plugin linked in: names outside the cluster fail at once with SERVFAIL, and
no query ever leaves the namespace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cluster.node import CLUSTER_DNS

DNS_IMAGE = "bookgen.local/coredns:latest"
PROVISIONER_IMAGE = "bookgen.local/local-path-provisioner:latest"
HELPER_IMAGE = "bookgen.local/busybox:latest"
STORAGE_CLASS = "local-path"

COREFILE = """\
.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loadbalance
}
"""

_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "runAsUser": 65532, "runAsGroup": 65532, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _sa(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}


def _cluster_role(name: str, rules: list[dict[str, Any]], sa: str, ns: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
    ]


def coredns() -> list[dict[str, Any]]:
    ns, labels = "kube-system", {"k8s-app": "kube-dns"}
    container = {
        "name": "coredns", "image": DNS_IMAGE, "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "securityContext": _RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }  # fmt: skip
    return [
        _sa("coredns", ns),
        *_cluster_role("system:coredns", [
            {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ], "coredns", ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": ns},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "priorityClassName": "system-cluster-critical",
                      "containers": [container],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
         "spec": {"clusterIP": CLUSTER_DNS, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"}]}},
    ]  # fmt: skip


def local_path_provisioner(data_dir: Path) -> list[dict[str, Any]]:
    """rancher/local-path-provisioner's own deploy/local-path-storage.yaml, with our images, its data
    under the cluster's state folder (nothing in /opt), and made the default StorageClass."""
    ns = "local-path-storage"
    sa = "local-path-provisioner-service-account"
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(data_dir)]}]}
    helper = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
        "spec": {"priorityClassName": "system-node-critical",
                 "containers": [{"name": "helper-pod", "image": HELPER_IMAGE, "imagePullPolicy": "Never"}]},
    }  # fmt: skip
    container = {
        "name": "local-path-provisioner", "image": PROVISIONER_IMAGE, "imagePullPolicy": "Never",
        "command": ["/bin/local-path-provisioner", "--debug", "start", "--config", "/etc/config/config.json",
                    "--helper-image", HELPER_IMAGE],
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"}],
        "securityContext": _RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config/"}],
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        _sa(sa, ns),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "local-path-provisioner-role", "namespace": ns},
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "local-path-provisioner-bind", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "local-path-provisioner-role"},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
        *_cluster_role("local-path-provisioner-role", [
            {"apiGroups": [""], "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["persistentvolumes"],
             "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
        ], sa, ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": ns},
         "data": {"config.json": json.dumps(config),
                  "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                  "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                  "helperPod.yaml": json.dumps(helper)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "local-path-provisioner", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "local-path-provisioner"}},
                  "template": {"metadata": {"labels": {"app": "local-path-provisioner"}}, "spec": {
                      "serviceAccountName": sa, "containers": [container],
                      "volumes": [{"name": "config-volume", "configMap": {"name": "local-path-config"}}]}}}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
         "reclaimPolicy": "Delete"},
    ]  # fmt: skip


def manifests(data_dir: Path) -> list[dict[str, Any]]:
    return [*coredns(), *local_path_provisioner(data_dir)]
