"""Pure reconcile planning and status: no write when nothing differs, defaults never count as drift."""

from __future__ import annotations

import copy

from bookgen_operator.core.reconcile import adopt, contains, key_of, plan, quantity
from bookgen_operator.core.status import Condition, PoolState, component_conditions, desired_status, status_patch

OWNER = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
         "metadata": {"name": "q", "namespace": "ns", "uid": "u-1"}}


def worker(replicas: int = 1, command: list[str] | None = None) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "q-worker-content", "labels": {"app.kubernetes.io/component": "worker"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"spec": {"containers": [{"name": "worker", "image": "img",
                                                        "command": command or ["celery", "-c", "2"],
                                                        "resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}},
                                                        "ports": [{"containerPort": 9808}]}]}}},
    }


def as_stored(obj: dict) -> dict:
    """What the API server returns: our fields plus server-side defaults and status."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update(uid="x", resourceVersion="7", generation=1, creationTimestamp="t", namespace="ns")
    container = stored["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    container["ports"][0]["protocol"] = "TCP"
    container["resources"]["requests"] = {"cpu": "1", "memory": "1024Mi"}
    stored["spec"]["strategy"] = {"type": "RollingUpdate"}
    stored["status"] = {"replicas": 1}
    return stored


def test_unchanged_children_need_no_write() -> None:
    desired = [adopt(worker(), OWNER)]
    actual = {key_of(desired[0]): as_stored(desired[0])}
    assert plan(desired, actual) == []


def test_missing_child_is_created_and_drift_is_patched() -> None:
    desired = [adopt(worker(command=["celery", "-c", "4"]), OWNER)]
    assert [a.verb for a in plan(desired, {})] == ["create"]
    stored = as_stored(adopt(worker(), OWNER))
    (action,) = plan(desired, {key_of(desired[0]): stored})
    assert action.verb == "patch"
    assert action.body["spec"]["template"]["spec"]["containers"][0]["command"] == ["celery", "-c", "4"]


def test_worker_replicas_belong_to_the_autoscaler_once_the_deployment_exists() -> None:
    desired = [adopt(worker(replicas=1), OWNER)]
    stored = as_stored(adopt(worker(replicas=7), OWNER))
    assert plan(desired, {key_of(desired[0]): stored}) == []


def test_quantities_compare_by_value() -> None:
    assert quantity("500m") == quantity("0.5") and quantity("1Gi") == quantity("1024Mi")
    assert contains({"cpu": "1"}, {"cpu": "1000m"}) and not contains({"cpu": "2"}, {"cpu": "1000m"})


def test_adopt_sets_controller_owner_reference() -> None:
    adopted = adopt(worker(), OWNER)
    (ref,) = adopted["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1" and ref["controller"] and adopted["metadata"]["namespace"] == "ns"


def test_condition_transition_time_changes_only_with_status() -> None:
    pools = [PoolState("content", True, 1, 0, 1)]
    auto = Condition("Autoscaling", True, "Active", "ok")

    def conds(ready: int) -> list[Condition]:
        return component_conditions(redis_external=False, redis={"status": {"readyReplicas": 1}},
                                    pools=[PoolState("content", True, 1, ready, 1)], flower_enabled=False,
                                    flower=None, autoscaling=auto)

    first = desired_status({}, generation=1, conditions=conds(0), pools=pools, now="2026-01-01T00:00:00Z")
    ready = {c["type"]: c for c in first["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PoolsNotReady"
    same = desired_status(first, generation=1, conditions=conds(0), pools=pools, now="2026-01-01T00:01:00Z")
    assert status_patch(first, same) is None
    later = desired_status(first, generation=1, conditions=conds(1), pools=pools, now="2026-01-01T00:02:00Z")
    by_type = {c["type"]: c for c in later["conditions"]}
    assert by_type["Ready"]["status"] == "True" and by_type["Ready"]["lastTransitionTime"] == "2026-01-01T00:02:00Z"
    assert by_type["RedisReady"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_pools_removed_from_the_spec_leave_the_status() -> None:
    auto = Condition("Autoscaling", False, "Disabled", "off")
    old = {"pools": {"gone": {"replicas": 1, "busyWorkers": 0}, "kept": {"replicas": 1, "readyReplicas": 1}}}
    new = desired_status(old, generation=2, conditions=[auto], pools=[PoolState("kept", True, 1, 1, 1)], now="t")
    patch = status_patch(old, new)
    assert patch is not None and patch["pools"] == {"gone": None}


def test_without_autoscaling_the_spec_owns_worker_replicas() -> None:
    desired = [adopt(worker(replicas=2), OWNER)]
    stored = as_stored(adopt(worker(replicas=7), OWNER))
    (action,) = plan(desired, {key_of(desired[0]): stored}, autoscaler_owns_replicas=False)
    assert action.verb == "patch" and action.body["spec"]["replicas"] == 2


def test_immutable_fields_are_never_patched() -> None:
    desired = adopt(worker(), OWNER)
    stored = as_stored(desired)
    stored["spec"]["selector"] = {"matchLabels": {"other": "selector"}}
    assert plan([desired], {key_of(desired): stored}) == []


def test_a_field_the_server_omits_is_no_drift_once_learned_but_a_real_edit_is() -> None:
    from bookgen_operator.core.reconcile import comparable, learn

    desired = worker()
    desired["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"initialDelaySeconds": 0,
                                                                              "periodSeconds": 20}
    desired = adopt(desired, OWNER)
    stored = as_stored(desired)
    del stored["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["initialDelaySeconds"]  # omitempty
    key = key_of(desired)
    assert [a.verb for a in plan([desired], {key: stored})] == ["patch"]  # the manifest alone: endless drift
    learned = {key: learn(comparable(desired, existing=True), stored)}
    assert plan([desired], {key: stored}, learned=learned) == []
    edited = copy.deepcopy(stored)
    edited["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["initialDelaySeconds"] = 99
    assert [a.verb for a in plan([desired], {key: edited}, learned=learned)] == ["patch"]
    changed = copy.deepcopy(desired)
    changed["spec"]["template"]["spec"]["containers"][0]["command"] = ["celery", "-c", "8"]
    assert [a.verb for a in plan([changed], {key: stored}, learned=learned)] == ["patch"]  # stale knowledge unused


def test_prune_deletes_only_undesired_children_this_owner_controls() -> None:
    from bookgen_operator.core.reconcile import prune

    kept, gone = adopt(worker(), OWNER), adopt(worker(), OWNER)
    gone["metadata"]["name"] = "q-worker-export"
    foreign = copy.deepcopy(gone)
    foreign["metadata"].update(name="q-worker-other", ownerReferences=[{"uid": "u-2", "controller": True}])
    existing = {key_of(o): {**o, "metadata": {**o["metadata"], "uid": f"id-{o['metadata']['name']}"}}
                for o in (kept, gone, foreign)}
    (action,) = prune([kept], existing, "u-1")
    assert (action.verb, action.name, action.body) == ("delete", "q-worker-export", {"uid": "id-q-worker-export"})
