"""Acceptance 2: every Kubernetes API call the operator's end-to-end tests recorded
(operator/api-calls.json) is allowed by the chart's RBAC, cluster-wide and namespaced; the RBAC has no
wildcards and grants nothing beyond the recorded calls and a few kopf needs justified below."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import ROOT, VARIANTS, Render, by_kind
from .rbac import Authorizer, Call, Subject, granted, wildcards

API_CALLS = ROOT / "operator" / "api-calls.json"
RELEASE_NAMESPACE = "bookgen-system"

#: Grants the operator needs that its e2e tests (cluster-wide, against an emulator) cannot record.
JUSTIFIED_EXTRAS = {
    # namespaced mode only: kopf lists and watches namespaces to learn which watched ones exist
    # (it falls back to assuming they exist if forbidden, but then never notices new ones).
    Call("list", "", "namespaces"): "kopf namespace observer (namespaced mode)",
    Call("watch", "", "namespaces"): "kopf namespace observer (namespaced mode)",
    # OwnerReferencesPermissionEnforcement: a child's `blockOwnerDeletion: true` needs this on the owner
    # (an admission check, not an API call of the operator: the emulator has no such admission).
    Call("update", "bookgen.io", "bookgenqueues", "finalizers"): "OwnerReferencesPermissionEnforcement",
}


def recorded_calls() -> list[Call]:
    if not API_CALLS.exists():
        pytest.skip("operator/api-calls.json is not written yet (the operator's e2e tests write it)")
    calls = sorted({Call.from_json(item) for item in json.loads(API_CALLS.read_text())}, key=Call.sort_key)
    assert calls, "operator/api-calls.json is empty"
    return calls


def operator_subject(objects: list[dict[str, Any]]) -> Subject:
    (deployment,) = by_kind(objects, "Deployment")
    return Subject(deployment["spec"]["template"]["spec"]["serviceAccountName"], deployment["metadata"]["namespace"])


#: Calls made in the operator's own (release) namespace only: the leader election Lease.
IN_RELEASE_NAMESPACE = {("coordination.k8s.io", "leases")}


def in_release_namespace(call: Call) -> bool:
    return (call.group, call.resource) in IN_RELEASE_NAMESPACE


def test_cluster_wide_rbac_allows_every_recorded_call(render: Render) -> None:
    objects = render()
    authorizer = Authorizer(objects, operator_subject(objects))
    assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == ["bookgen-bookgen-operator-leader-election"]
    denied = [str(c) for c in recorded_calls()
              if not authorizer.allows(c, RELEASE_NAMESPACE if in_release_namespace(c) else None)]
    assert denied == [], f"the chart's ClusterRole does not grant: {denied}"


def test_namespaced_rbac_allows_every_recorded_call_in_each_watched_namespace(render: Render) -> None:
    objects = render([VARIANTS["namespaced"]])
    authorizer = Authorizer(objects, operator_subject(objects))
    leases = [c for c in recorded_calls() if in_release_namespace(c)]
    assert leases and all(authorizer.allows(c, RELEASE_NAMESPACE) for c in leases)
    assert not any(authorizer.allows(c) or authorizer.allows(c, "team-a") for c in leases)  # nowhere else
    for namespace in ("team-a", "team-b"):
        denied = [str(c) for c in recorded_calls()
                  if not in_release_namespace(c) and not authorizer.allows(c, namespace)]
        assert denied == [], f"the chart's RBAC does not grant in {namespace}: {denied}"
        # namespaced mode really is namespaced: nothing on namespaced resources outside the watched ones
        namespaced = [c for c in recorded_calls() if not c.cluster_scoped and not in_release_namespace(c)]
        assert not any(authorizer.allows(c, "kube-system") for c in namespaced)
        assert not any(authorizer.allows(c) for c in namespaced)  # no cluster-wide list/watch either
    for extra in JUSTIFIED_EXTRAS:
        assert authorizer.allows(extra) if extra.cluster_scoped else authorizer.allows(extra, "team-a"), extra


def test_the_check_fails_when_the_operator_uses_a_verb_the_chart_does_not_grant(render: Render) -> None:
    objects = render()
    authorizer = Authorizer(objects, operator_subject(objects))
    for new_call in (
        Call("delete", "", "secrets"),
        Call("update", "bookgen.io", "bookgenqueues", "status"),
        Call("list", "", "secrets"),
        Call("get", "bookgen.io", "bookgenqueues", "status"),
    ):
        assert not authorizer.allows(new_call), new_call
    # and a binding to another ServiceAccount grants our operator nothing
    stranger = Authorizer(objects, Subject("someone-else", RELEASE_NAMESPACE))
    assert not stranger.allows(Call("list", "bookgen.io", "bookgenqueues"))


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_rbac_is_least_privilege(render: Render, variant: str) -> None:
    objects = render([VARIANTS[variant]])
    assert wildcards(objects) == []
    recorded = set(recorded_calls())
    excess = sorted(str(c) for c in granted(objects) - recorded - set(JUSTIFIED_EXTRAS))
    assert excess == [], f"granted but never used by the operator (remove, or justify in JUSTIFIED_EXTRAS): {excess}"


def test_rbac_create_false_renders_no_rbac(render: Render) -> None:
    objects = render([VARIANTS["minimal"]])
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]
