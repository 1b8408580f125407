"""The reconciles' view of a queue's children (child_cache.ChildCache): watch events, LISTs, our own writes."""

from __future__ import annotations

import gc
import itertools
from typing import Any

from bookgen_operator.controller.child_cache import ChildCache

KINDS = (("v1", "Service"), ("apps/v1", "Deployment"))


def obj(name: str, rv: int, *, instance: str = "demo", kind: str = "Service", ns: str = "ns",
        **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                         "labels": {"app.kubernetes.io/instance": instance}}, **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in items)


def test_a_queue_is_due_a_list_until_listed_and_again_after_the_resync_period() -> None:
    clock = Clock()
    cache = ChildCache(KINDS, resync=300, jitter=0, clock=clock)
    assert cache.due("ns", "demo")
    cache.listed("ns", "demo", {("v1", "Service"): [obj("demo-redis", 5)]})
    assert not cache.due("ns", "demo") and cache.due("ns", "other")
    clock.now += 299
    assert not cache.due("ns", "demo")
    clock.now += 1
    assert cache.due("ns", "demo")


def test_queues_listed_together_are_due_again_at_spread_times_within_the_jitter() -> None:
    clock = Clock()
    cache = ChildCache(KINDS, resync=300, jitter=0.5, clock=clock)
    for i in range(100):
        cache.listed("ns", f"q{i}", {})
    due_after = []
    for step in range(0, 301, 10):
        clock.now = 1000.0 + step
        due_after.append(sum(cache.due("ns", f"q{i}") for i in range(100)))
    assert due_after[14] == 0 and due_after[-1] == 100  # none before 150 s, every one by 300 s
    assert max(b - a for a, b in itertools.pairwise(due_after)) <= 20  # spread, not a burst


def test_events_add_change_and_remove_children_of_the_right_queue_only() -> None:
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-redis", 5))
    cache.seen(obj("other-redis", 6, instance="other"))
    cache.seen(obj("demo-flower", 7, ns="elsewhere"))
    assert names(cache.children("ns", "v1", "Service", "demo")) == ["demo-redis"]
    cache.seen(obj("demo-redis", 8, spec={"ports": [1]}))
    assert cache.children("ns", "v1", "Service", "demo")[0]["spec"] == {"ports": [1]}
    cache.gone("ns", "v1", "Service", "demo-redis")
    assert cache.children("ns", "v1", "Service", "demo") == []
    assert names(cache.children("ns", "v1", "Service", "other")) == ["other-redis"]


def test_an_older_event_never_replaces_a_newer_object() -> None:
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-redis", 9, spec={"new": True}))  # e.g. our own write, stored at 9
    cache.seen(obj("demo-redis", 8, spec={"new": False}))  # the watch's event from before it
    assert cache.children("ns", "v1", "Service", "demo")[0]["spec"] == {"new": True}


def test_a_child_whose_instance_label_changed_moves_to_its_new_queue() -> None:
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-redis", 5))
    cache.seen(obj("demo-redis", 6, instance="edited"))
    assert cache.children("ns", "v1", "Service", "demo") == []
    assert names(cache.children("ns", "v1", "Service", "edited")) == ["demo-redis"]


def test_a_list_replaces_what_was_cached_for_that_queue_and_kind() -> None:
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-stale", 3))  # a delete whose event was missed
    cache.seen(obj("demo-worker-a", 4, kind="Deployment"))
    # List items carry no apiVersion/kind on a real server: the cache files them by the kind listed.
    item = obj("demo-redis", 5)
    del item["apiVersion"], item["kind"]
    cache.listed("ns", "demo", {("v1", "Service"): [item]})
    assert names(cache.children("ns", "v1", "Service", "demo")) == ["demo-redis"]
    assert cache.children("ns", "v1", "Service", "demo")[0]["kind"] == "Service"
    assert names(cache.children("ns", "apps/v1", "Deployment", "demo")) == ["demo-worker-a"]  # not listed: kept


def test_a_list_read_before_a_watch_event_does_not_put_the_older_object_back() -> None:
    # The race bench.operator_scale hit: a Deployment's ready status arrived while the queue's LIST
    # (read at version 10) was in flight; the LIST's older copy must not replace it.
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-worker-export", 12, kind="Deployment", status={"readyReplicas": 1}))
    cache.seen(obj("demo-flower", 11))  # made after the LIST's snapshot: not in it, and not gone
    listed = {("apps/v1", "Deployment"): [obj("demo-worker-export", 9, kind="Deployment", status={})],
              ("v1", "Service"): [obj("demo-redis", 8)]}
    cache.listed("ns", "demo", listed, {("apps/v1", "Deployment"): "10", ("v1", "Service"): "10"})
    (worker,) = cache.children("ns", "apps/v1", "Deployment", "demo")
    assert worker["status"] == {"readyReplicas": 1}
    assert names(cache.children("ns", "v1", "Service", "demo")) == ["demo-flower", "demo-redis"]


def test_a_child_deleted_while_a_list_was_in_flight_stays_deleted_until_it_is_made_again() -> None:
    cache = ChildCache(KINDS)
    cache.seen(obj("demo-redis", 5))
    cache.gone("ns", "v1", "Service", "demo-redis", "12")  # the DELETED event, during the LIST
    cache.listed("ns", "demo", {("v1", "Service"): [obj("demo-redis", 5)]}, {("v1", "Service"): "10"})
    assert cache.children("ns", "v1", "Service", "demo") == [], "a missing child must stay visible to repair"
    cache.seen(obj("demo-redis", 14))  # recreated by the next reconcile
    assert names(cache.children("ns", "v1", "Service", "demo")) == ["demo-redis"]


def test_a_list_newer_than_a_tombstone_clears_it() -> None:
    cache = ChildCache(KINDS)
    cache.gone("ns", "v1", "Service", "demo-redis", "12")
    cache.listed("ns", "demo", {("v1", "Service"): []}, {("v1", "Service"): "20"})
    assert not cache._tombstones


def test_kinds_it_does_not_cover_are_ignored() -> None:
    cache = ChildCache(KINDS)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "m", "namespace": "ns", "labels": {"app.kubernetes.io/instance": "demo"}}}
    cache.seen(monitor)
    assert not cache.covers("monitoring.coreos.com/v1", "ServiceMonitor")
    assert cache.children("ns", "monitoring.coreos.com/v1", "ServiceMonitor", "demo") == []


def test_forgetting_a_queue_makes_its_namesake_list_again() -> None:
    cache = ChildCache(KINDS)
    cache.listed("ns", "demo", {("v1", "Service"): []})
    cache.forget("ns", "demo")
    assert cache.due("ns", "demo")


def deployment(name: str, rv: int) -> dict[str, Any]:
    """A Deployment as the API server sends it: managedFields, a pod template, a status."""
    return obj(name, rv, kind="Deployment",
               spec={"replicas": 1, "template": {"spec": {"containers": [{
                   "name": "worker", "image": "bookgen:1",
                   "env": [{"name": f"E{i}", "value": str(i)} for i in range(20)]}]}}},
               status={"readyReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]},
               **{"metadata": {**obj(name, rv)["metadata"], "managedFields": [
                   {"manager": "bookgen-operator", "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {f"f:field{i}": {} for i in range(50)}}]}})


def test_a_cached_child_keeps_everything_but_managed_fields_and_is_the_readers_own_copy() -> None:
    cache = ChildCache(KINDS)
    sent = deployment("demo-worker", 7)
    cache.seen(sent)
    [got] = cache.children("ns", "apps/v1", "Deployment", "demo")
    assert "managedFields" not in got["metadata"]
    assert got == {**sent, "metadata": {k: v for k, v in sent["metadata"].items() if k != "managedFields"}}
    got["spec"]["replicas"] = 9
    assert cache.children("ns", "apps/v1", "Deployment", "demo")[0]["spec"]["replicas"] == 1


def test_cached_children_leave_the_garbage_collector_nothing_to_walk() -> None:
    # A full collection walks every container the collector tracks; the cache of 250 queues' children
    # was the largest part of the operator's heap when kept as parsed dicts (about 100 per Deployment).
    cache = ChildCache(KINDS)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(500):
        cache.seen(deployment(f"q{i}-worker", i + 1))
    gc.collect()
    assert len(gc.get_objects()) - before < 500 * 2
