"""A small evaluator of Kubernetes RBAC for the chart tests: is an API call of the operator's
ServiceAccount allowed by the rendered (Cluster)Roles and bindings?

It follows the RBAC authorizer's rules for what the chart can render: a call on a namespaced resource
in namespace N is allowed by a ClusterRole bound with a ClusterRoleBinding, or by a Role (or
ClusterRole) bound with a RoleBinding in N; a call across all namespaces (kopf's cluster-wide
list/watch) or on a cluster-scoped resource only by a ClusterRoleBinding. Subresources are matched as
"resource/subresource". Wildcards are not evaluated: the chart must not use them (a test checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Resources without a namespace among those the operator may touch; anything else is namespaced.
CLUSTER_SCOPED = frozenset(
    {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
        ("", "nodes"),
        ("", "persistentvolumes"),
        ("storage.k8s.io", "storageclasses"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
    }
)
ALL_NAMESPACES = None


@dataclass(frozen=True)
class Call:
    verb: str
    group: str
    resource: str
    subresource: str | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Call:
        return cls(item["verb"], item["group"] or "", item["resource"], item.get("subresource") or None)

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def cluster_scoped(self) -> bool:
        return (self.group, self.resource) in CLUSTER_SCOPED

    def __str__(self) -> str:
        return f"{self.verb} {self.group or 'core'}/{self.rbac_resource}"

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.group, self.rbac_resource, self.verb, "")


@dataclass(frozen=True)
class Subject:
    name: str
    namespace: str


def rule_allows(rule: Mapping[str, Any], call: Call) -> bool:
    return (
        call.group in (rule.get("apiGroups") or [])
        and call.rbac_resource in (rule.get("resources") or [])
        and call.verb in (rule.get("verbs") or [])
        and not rule.get("resourceNames")  # the operator's calls are not restricted to names
    )


def _binds(binding: Mapping[str, Any], subject: Subject) -> bool:
    return any(
        s.get("kind") == "ServiceAccount" and s.get("name") == subject.name and s.get("namespace") == subject.namespace
        for s in binding.get("subjects") or []
    )


class Authorizer:
    def __init__(self, objects: Iterable[Mapping[str, Any]], subject: Subject) -> None:
        objects = list(objects)
        self.subject = subject
        self.cluster_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
        self.roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
        self.cluster_bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding" and _binds(o, subject)]
        self.bindings = [o for o in objects if o["kind"] == "RoleBinding" and _binds(o, subject)]

    def _rules_of(self, ref: Mapping[str, Any], namespace: str | None) -> list[Mapping[str, Any]]:
        if ref["kind"] == "ClusterRole":
            role = self.cluster_roles.get(ref["name"])
        else:
            role = self.roles.get((namespace, ref["name"]))
        return list((role or {}).get("rules") or [])

    def rules_for(self, namespace: str | None) -> list[Mapping[str, Any]]:
        """The rules in force for the subject in `namespace` (None: cluster-wide / all namespaces)."""
        rules = [r for b in self.cluster_bindings for r in self._rules_of(b["roleRef"], None)]
        if namespace is not None:
            for b in self.bindings:
                if b["metadata"]["namespace"] == namespace:
                    rules += self._rules_of(b["roleRef"], namespace)
        return rules

    def allows(self, call: Call, namespace: str | None = ALL_NAMESPACES) -> bool:
        scope = None if call.cluster_scoped else namespace
        return any(rule_allows(r, call) for r in self.rules_for(scope))


def granted(objects: Iterable[Mapping[str, Any]]) -> set[Call]:
    """Every (verb, group, resource[/subresource]) any rendered Role or ClusterRole grants."""
    out: set[Call] = set()
    for o in objects:
        if o["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in o.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    name, _, sub = resource.partition("/")
                    for verb in rule.get("verbs") or []:
                        out.add(Call(verb, group, name, sub or None))
    return out


def wildcards(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    found = []
    for o in objects:
        for i, rule in enumerate(o.get("rules") or [] if o["kind"] in ("Role", "ClusterRole") else []):
            for key in ("apiGroups", "resources", "verbs", "nonResourceURLs"):
                if any("*" in v for v in rule.get(key) or []):
                    found.append(f"{o['kind']}/{o['metadata']['name']} rule {i} {key}")
    return found
