"""spec.podTemplate and the components' own: what parse_queue accepts and refuses, where the builders
put it (and what stays ours), which pods a change rolls, and how the planner repairs a hand edit and
takes a field out that the template no longer sets (core/removals.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
from bookgen_operator.core.reconcile import comparable, contains, key_of, plan
from bookgen_operator.core.removals import RECORD_ANNOTATION, without_nulls
from bookgen_operator.core.resources import desired_objects, pod_specs
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS

from tests.support.pod_security import restricted_violations

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "books"}, "annotations": {"mesh.example.com/inject": "true"}},
    "spec": {
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "bookgen", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
        "priorityClassName": "bookgen-high",
        "serviceAccountName": "bookgen-identity",
    },
}


def queue(spec: dict[str, Any]) -> QueueSpec:
    return parse_queue({"metadata": {"name": "q", "namespace": "books", "uid": "u"}, "spec": spec})


def pools_with(name: str, **fields: Any) -> list[dict[str, Any]]:
    pools = copy.deepcopy(DEFAULT_POOLS)
    next(p for p in pools if p["name"] == name).update(fields)
    return pools


def workloads(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in desired_objects(spec) if o["kind"] in ("Deployment", "StatefulSet")}


def pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]


def test_the_queue_template_reaches_every_bookgen_pod_and_not_redis() -> None:
    found = workloads(queue({"podTemplate": TEMPLATE}))
    for name, workload in found.items():
        spec, labels = pod(workload)["spec"], pod(workload)["metadata"]["labels"]
        if name == "q-redis":
            assert "team" not in labels and "nodeSelector" not in spec and RECORD_ANNOTATION not in \
                workload["metadata"].get("annotations", {})
            continue
        assert labels["team"] == "books" and labels["app.kubernetes.io/instance"] == "q", name
        assert pod(workload)["metadata"]["annotations"] == {"mesh.example.com/inject": "true"}
        for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "serviceAccountName"):
            assert spec[field] == TEMPLATE["spec"][field], (name, field)
        assert RECORD_ANNOTATION in workload["metadata"]["annotations"], "what the template set is recorded"


def test_redis_takes_its_own_template() -> None:
    found = workloads(queue({"redis": {"podTemplate": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}))
    assert pod(found["q-redis"])["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert not any("nodeSelector" in pod(w)["spec"] for n, w in found.items() if n != "q-redis")


def test_a_components_template_goes_over_the_queues() -> None:
    content = {"metadata": {"labels": {"team": "llm", "gpu": "yes"}},
               "spec": {"nodeSelector": {"accelerator": "none"}, "tolerations": [],
                        "priorityClassName": "bookgen-interactive"}}
    found = workloads(queue({"podTemplate": TEMPLATE, "pools": pools_with("content", podTemplate=content),
                             "beat": {"podTemplate": {"spec": {"serviceAccountName": "beat-only"}}}}))
    spec, labels = pod(found["q-worker-content"])["spec"], pod(found["q-worker-content"])["metadata"]["labels"]
    assert labels["team"] == "llm" and labels["gpu"] == "yes"  # labels merge, the pool's value wins
    assert spec["nodeSelector"] == {"pool": "batch", "accelerator": "none"}  # nodeSelector merges too
    assert spec["tolerations"] == [] and spec["priorityClassName"] == "bookgen-interactive"  # the rest replaces
    assert spec["affinity"] == TEMPLATE["spec"]["affinity"]  # not given by the pool: the queue's
    assert pod(found["q-beat"])["spec"]["serviceAccountName"] == "beat-only"
    assert pod(found["q-flower"])["spec"]["serviceAccountName"] == "bookgen-identity"
    assert pod(found["q-worker-export"])["spec"]["tolerations"] == TEMPLATE["spec"]["tolerations"]


def test_what_keeps_our_guarantees_stays_ours() -> None:
    plain, templated = workloads(queue({})), workloads(queue({
        "podTemplate": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "automountServiceAccountToken": True}}}))
    for name, before in plain.items():
        if name == "q-redis":
            continue
        a, b = pod(before)["spec"], pod(templated[name])["spec"]
        for field in ("securityContext", "terminationGracePeriodSeconds", "shareProcessNamespace",
                      "enableServiceLinks"):
            assert a.get(field) == b.get(field), (name, field)
        assert a["containers"] == b["containers"], "command, probes, security context, env: untouched"
        assert pod(templated[name])["metadata"]["labels"].items() >= pod(before)["metadata"]["labels"].items()
        assert b["automountServiceAccountToken"] is True, "the one default a template may turn (workload identity)"


def test_templated_manifests_validate_and_stay_restricted() -> None:
    spec = queue({"podTemplate": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
         "minDomains": 2, "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "q"}},
         "matchLabelKeys": ["bookgen.io/pool"], "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore"}]}},
        "redis": {"podTemplate": TEMPLATE}})
    objects = desired_objects(spec)
    for obj in objects:
        assert kubernetes_validate.validate(obj, "1.31.0", strict=True), obj["metadata"]["name"]
    for name, pod_spec in pod_specs(objects):
        assert restricted_violations(pod_spec) == [], name


def test_without_a_template_the_manifests_are_as_before() -> None:
    for workload in workloads(queue({})).values():
        assert RECORD_ANNOTATION not in workload["metadata"].get("annotations", {})
        assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & pod(workload)["spec"].keys()


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    a, b = ({(o["kind"], o["metadata"]["name"]): o for o in desired_objects(queue(s))} for s in (before, after))
    assert a.keys() == b.keys()
    return sorted(key[1] for key in a if a[key] != b[key])


def test_a_change_rolls_the_pods_it_concerns_and_only_those() -> None:
    assert changed({}, {"pools": pools_with("export", podTemplate={"metadata": {"labels": {"x": "y"}}})}) == [
        "q-worker-export"]
    assert changed({}, {"podTemplate": {"spec": {"priorityClassName": "p"}}}) == [
        "q-beat", "q-flower", "q-worker-content", "q-worker-export", "q-worker-monitoring", "q-worker-validation"]
    assert changed({}, {"redis": {"podTemplate": {"spec": {"priorityClassName": "p"}}}}) == ["q-redis"]
    assert changed({}, {"beat": {"podTemplate": {"metadata": {"annotations": {"a": "b"}}}}}) == ["q-beat"]
    assert changed({}, {"flower": {"resources": {"limits": {"memory": "1Gi"}}}}) == ["q-flower"]


@pytest.mark.parametrize(("template", "message"), [
    ({"metadata": {"labels": {"app.kubernetes.io/instance": "x"}}},
     "spec.podTemplate.metadata.labels: podTemplate labels must not set app.kubernetes.io/* or bookgen.io/pool"),
    ({"metadata": {"labels": {"bookgen.io/pool": "x"}}}, "the operator's labels select the pods (got bookgen.io/pool)"),
    ({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "1"}}},
     "the autoscaler sets it on busy workers"),
    ({"metadata": {"labels": {"team": "a b"}}}, "spec.podTemplate.metadata.labels.team: 'a b' is not a valid label"),
    ({"spec": {"securityContext": {}}}, "spec.podTemplate.spec: unknown field(s) securityContext"),
    ({"spec": {"terminationGracePeriodSeconds": 5}}, "unknown field(s) terminationGracePeriodSeconds"),
    ({"spec": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
     "spec.podTemplate.spec.tolerations[0]: a toleration with operator Exists takes no value"),
    ({"spec": {"tolerations": [{"operator": "Equal", "value": "v"}]}}, "a toleration without a key must have"),
    ({"spec": {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}},
     "tolerationSeconds needs effect NoExecute"),
    ({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpression": []}]}}}}},
     "spec.podTemplate.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
     ".nodeSelectorTerms[0]: unknown field(s) matchExpression"),
    ({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": "high"}]}}}}, "preferredDuringSchedulingIgnoredDuringExecution[0].weight must be a whole number"),
    ({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z"}]}},
     "topologySpreadConstraints[0]: whenUnsatisfiable is required"),
    ({"spec": {"priorityClassName": "High_Priority"}}, "spec.podTemplate.spec.priorityClassName must be a lower-case"),
])  # fmt: skip
def test_a_bad_template_is_refused_in_one_line_naming_the_field(template: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        queue({"podTemplate": template})
    assert message in str(err.value) and "\n" not in str(err.value)


# -- the planner ------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def stored(spec: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """The children as the server would hold them after a create (our manifests, plus server fields)."""
    out = {}
    for obj in desired_objects(queue(spec)):
        obj = copy.deepcopy(obj)
        obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet") and "serviceAccountName" in pod(obj)["spec"]:
            pod(obj)["spec"]["serviceAccount"] = pod(obj)["spec"]["serviceAccountName"]  # the server's alias
        out[key_of(obj)] = obj
    return out


def reconcile(spec: dict[str, Any], actual: dict[Any, dict[str, Any]]) -> list[str]:
    """Plan against `actual`, apply each patch like the server; the patched names."""
    patched = []
    for action in plan(desired_objects(queue(spec)), actual):
        assert action.verb == "patch", action.describe()
        key = (action.api_version, action.kind, action.name)
        actual[key] = merge_patch(actual[key], action.body)
        patched.append(action.name)
    return patched


def test_a_settled_templated_queue_plans_no_write_and_a_hand_edit_one() -> None:
    spec = {"podTemplate": TEMPLATE, "redis": {"podTemplate": TEMPLATE}}
    actual = stored(spec)
    assert reconcile(spec, actual) == []
    key = ("apps/v1", "Deployment", "q-worker-validation")
    pod(actual[key])["spec"]["nodeSelector"] = {"pool": "other"}  # a hand edit of a templated field
    pod(actual[key])["spec"]["tolerations"] = []
    assert reconcile(spec, actual) == ["q-worker-validation"]
    assert pod(actual[key])["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod(actual[key])["spec"]["tolerations"] == TEMPLATE["spec"]["tolerations"]
    assert reconcile(spec, actual) == []


def test_fields_taken_out_of_the_template_are_taken_out_of_the_pods() -> None:
    before = {"podTemplate": TEMPLATE, "redis": {"podTemplate": TEMPLATE}}
    actual = stored(before)
    # Someone else's additions (a policy engine's nodeSelector entry, a rollout restart) must survive.
    for obj in actual.values():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            pod(obj)["spec"]["nodeSelector"]["policy.example.com/zone"] = "eu"
            pod(obj)["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"
    after = copy.deepcopy(TEMPLATE)
    del after["metadata"]["labels"], after["spec"]["tolerations"], after["spec"]["serviceAccountName"]
    after["spec"]["nodeSelector"] = {"pool": "batch"}
    after["spec"]["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    spec = {"podTemplate": after}  # and Redis's template gone entirely
    assert sorted(reconcile(spec, actual)) == sorted(w for w in workloads(queue(spec)))
    for name, want in workloads(queue(spec)).items():
        have = actual[key_of(want)]
        got = pod(have)["spec"]
        assert "team" not in pod(have)["metadata"]["labels"], name
        assert pod(have)["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "now", name
        assert got["nodeSelector"].get("policy.example.com/zone") == "eu", f"{name}: not ours, kept"
        assert "tolerations" not in got and "serviceAccountName" not in got and "serviceAccount" not in got, name
        if name == "q-redis":
            assert "affinity" not in got and "priorityClassName" not in got
            assert RECORD_ANNOTATION not in have["metadata"].get("annotations", {})
        else:
            assert got["affinity"] == after["spec"]["affinity"], f"{name}: the old nodeAffinity is gone"
        assert contains(have, comparable(want, existing=True)), name
    assert reconcile(spec, actual) == [], "settled again"


def test_the_record_is_on_the_workload_not_its_pods() -> None:
    workload = workloads(queue({"podTemplate": TEMPLATE}))["q-worker-content"]
    record = json.loads(workload["metadata"]["annotations"][RECORD_ANNOTATION])
    assert record["labels"] == ["team"] and record["nodeSelector"] == ["pool"]
    assert set(record["spec"]) == set(TEMPLATE["spec"]) - {"nodeSelector"}
    assert RECORD_ANNOTATION not in pod(workload)["metadata"].get("annotations", {})


def test_a_dropped_env_from_is_drift() -> None:
    with_env_from = {"envFrom": [{"secretRef": {"name": "extra"}}]}
    actual = stored(with_env_from)
    assert sorted(reconcile({}, actual)) == ["q-beat", "q-flower", "q-worker-content", "q-worker-export",
                                             "q-worker-monitoring", "q-worker-validation"]
    assert not any("envFrom" in c for o in actual.values() if o["kind"] == "Deployment"
                   for c in pod(o)["spec"]["containers"])
    assert reconcile({}, actual) == []


def test_what_is_learned_after_a_removal_is_what_we_enforce() -> None:
    body = {"metadata": {"labels": {"a": "b"}, "annotations": {RECORD_ANNOTATION: None}},
            "spec": {"template": {"spec": {"tolerations": None, "containers": [{"name": "c"}]}}}}
    assert without_nulls(body) == {"metadata": {"labels": {"a": "b"}},
                                   "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}

