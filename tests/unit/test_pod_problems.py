"""Why pods do not run, in the queue's conditions: the scheduler's reason, a container waiting on a
Secret or an image, a Deployment whose pods are refused; said once per component, and stable (the
same stuck pod gives the same words on every reconcile, so the status is not rewritten)."""

from __future__ import annotations

from typing import Any

from bookgen_operator.core.pod_problems import pod_problem, pod_problems, workload_problem
from bookgen_operator.core.status import Condition, PoolState, component_conditions

UNSCHEDULABLE = ("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: "
                 "0/1 nodes are available: 1 Preemption is not helpful for scheduling.")


def pod(name: str, component: str = "worker", pool: str | None = "content", *, deleting: bool = False,
        **status: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": component, **({"bookgen.io/pool": pool} if pool else {})}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status}


def pending(name: str, **kw: Any) -> dict[str, Any]:
    return pod(name, **kw, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE,
         "lastProbeTime": None, "lastTransitionTime": "2026-01-01T00:00:00Z"}])


def waiting(reason: str, message: str = "", image: str = "img:1") -> dict[str, Any]:
    return pod("p", phase="Pending", containerStatuses=[
        {"name": "worker", "image": image, "state": {"waiting": {"reason": reason, "message": message}}}])


def test_the_schedulers_reason_is_said() -> None:
    assert pod_problem(pending("p")) == f"cannot be scheduled: {UNSCHEDULABLE}"


def test_a_container_waiting_on_configuration_or_an_image() -> None:
    assert pod_problem(waiting("CreateContainerConfigError", 'secret "llm" not found')) == \
        'container worker: CreateContainerConfigError: secret "llm" not found'
    pulled = {pod_problem(waiting(r, f"rpc error {n}")) for n, r in enumerate(("ErrImagePull", "ImagePullBackOff"))}
    assert pulled == {"container worker: cannot pull image img:1"}, "the two pull states say the same"
    crash = waiting("CrashLoopBackOff", "back-off 40s restarting failed container")
    crash["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 2}}
    assert pod_problem(crash) == "container worker keeps crashing (exit code 2)", "no back-off delay: it changes"


def test_running_or_starting_pods_have_no_problem() -> None:
    assert pod_problem(pod("p", phase="Running", conditions=[{"type": "PodScheduled", "status": "True"}])) is None
    assert pod_problem(waiting("ContainerCreating")) is None


def test_one_problem_per_owner_from_live_pods_in_name_order() -> None:
    pods = [pending("b"), pending("a", pool="stuck"), pending("c", deleting=True, pool="gone"),
            pod("r", component="redis", pool=None, phase="Pending",
                containerStatuses=[{"name": "redis", "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                                           "message": "no key"}}}])]
    found = pod_problems(pods)
    assert set(found) == {"worker/content", "worker/stuck", "redis"}
    assert found["redis"] == "container redis: CreateContainerConfigError: no key"


def test_a_deployment_whose_pods_are_refused() -> None:
    deployment = {"status": {"conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "q-worker-content-7d-" is forbidden: no PriorityClass with name nope was found'}]}}
    assert workload_problem(deployment) == ('pods cannot be created: pods "q-worker-content-7d-" is forbidden: '
                                            "no PriorityClass with name nope was found")
    assert workload_problem({"status": {"conditions": [{"type": "Available", "status": "False"}]}}) is None


def conditions(problems: dict[str, str], pools: list[PoolState]) -> dict[str, Condition]:
    found = component_conditions(redis_external=False, redis=None, pools=pools, flower_enabled=True, flower=None,
                                 autoscaling=Condition("Autoscaling", True, "Active", "ok"), problems=problems)
    return {c.type: c for c in found}


def test_the_conditions_name_the_pool_and_the_reason() -> None:
    pools = [PoolState("content", True, 1, 1, 1), PoolState("stuck", True, 1, 0, 1)]
    found = conditions({"worker/stuck": f"cannot be scheduled: {UNSCHEDULABLE}", "redis": "cannot be scheduled: x",
                        "worker/content": "ignored: the pool has its workers"}, pools)
    workers = found["WorkersReady"]
    assert workers.status is False
    assert workers.message == f"pools without a ready worker: stuck 0/1 (cannot be scheduled: {UNSCHEDULABLE})"
    assert found["RedisReady"].message == "waiting for the Redis pod to become ready: cannot be scheduled: x"
    assert found["FlowerReady"].message == "waiting for the Flower pod to become ready"
    assert "stuck 0/1 (cannot be scheduled" in found["Ready"].message


def test_a_serving_pool_short_of_workers_says_why_too() -> None:
    found = conditions({"worker/content": "cannot be scheduled: Insufficient cpu"},
                       [PoolState("content", True, 3, 2, 3)])
    assert found["WorkersReady"].status is True
    assert found["WorkersReady"].message == \
        "ready workers per pool: content 2/3 (cannot be scheduled: Insufficient cpu)"
