"""The arithmetic of bench/real_autoscale.py's rows (bench/real_runs.py) and its KEDA objects
(bench/peers/keda_objects.py): what the README's table is computed from."""

from __future__ import annotations

import math

from bookgen_worker.config import DEFAULT_PRIORITY_STEPS, DEFAULT_SEPARATOR

from bench.peers import keda_objects
from bench.real_runs import Attempt, PodLife, first_on_new_pod, summarize
from bench.traces import compressed, make


def test_a_killed_attempt_is_counted_once_and_its_task_ran_twice() -> None:
    published = {"a": 0.0, "b": 0.0, "c": 1.0}
    starts = [Attempt("a", "p1", 2.0), Attempt("a", "p2", 9.0), Attempt("b", "p1", 3.0), Attempt("c", "p2", 4.0)]
    ends = [Attempt("a", "p2", 10.0), Attempt("b", "p1", 5.0)]  # c still runs on p2 at the end
    pods = [PodLife("p1", 0.0, 1.0, 8.0), PodLife("p2", 1.0, 3.0, None)]
    r = summarize(published, starts, ends, pods, [(0.0, 0), (0.5, 2), (8.0, 1)], [0.0], end=20.0)
    assert (r.killed, r.run_twice, r.unfinished) == (1, 1, 1)
    assert r.waits[:2] == [2.0, 3.0] and math.isinf(r.waits[2])  # the first start counts; c never finished
    assert r.pod_seconds == 8.0 + 19.0
    assert r.actions == 2
    assert r.startup == 1.5


def test_a_task_whose_pod_is_gone_without_an_end_was_killed() -> None:
    r = summarize({"a": 0.0}, [Attempt("a", "p1", 1.0)], [], [PodLife("p1", 0.0, 0.5, 3.0)], [], [], end=5.0)
    assert (r.killed, r.unfinished) == (1, 1)


def test_first_task_on_a_new_pod_per_burst() -> None:
    published = {"a": 10.0, "b": 10.5, "c": 50.0}
    starts = [Attempt("a", "old", 10.1), Attempt("b", "new", 18.0), Attempt("c", "old", 50.2)]
    pods = [PodLife("old", 0.0, 1.0, None), PodLife("new", 11.0, 17.0, None)]
    assert first_on_new_pod([9.0, 49.0], published, starts, pods) == [8.0, None]


def test_the_compressed_trace_keeps_the_shape_of_bursts() -> None:
    full, short = make("bursty", 1), compressed("bursty", 1, 6, 300)
    assert all(0 <= a.at < 300 for a in short)
    in_bursts = [a for a in short if any(b <= a.at * 6 < b + 10 for b in (120, 720, 1320))]
    assert 120 <= len(in_bursts) <= 180  # 3 batches of 300 tasks, one in 6 kept
    assert {a.priority for a in short} == {a.priority for a in full}


def test_tuned_keda_counts_every_priority_list_and_in_flight() -> None:
    so = keda_objects.scaled_object("ns", "q", queues=["content_generation", "high_priority"],
                                    steps=DEFAULT_PRIORITY_STEPS, separator=DEFAULT_SEPARATOR, tuned=True,
                                    list_length=4, max_replicas=8)
    triggers = so["spec"]["triggers"]
    lists = [t["metadata"]["listName"] for t in triggers if t["type"] == "redis"]
    assert len(lists) == 2 * len(DEFAULT_PRIORITY_STEPS) and "content_generation" in lists and "high_priority" in lists
    assert [t["metadata"]["valueLocation"] for t in triggers if t["type"] == "metrics-api"] == [
        'bookgen_queue_in_flight{queue="content_generation"}', 'bookgen_queue_in_flight{queue="high_priority"}']
    modifiers = so["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"].split(" + ") == [t["name"] for t in triggers] and modifiers["target"] == "4"
    assert so["spec"]["pollingInterval"] == 1 and so["spec"]["scaleTargetRef"] == {"name": "q-worker-content"}


def test_keda_at_its_defaults_reads_the_base_list_only() -> None:
    so = keda_objects.scaled_object("ns", "q", queues=["content_generation"], steps=DEFAULT_PRIORITY_STEPS,
                                    separator=DEFAULT_SEPARATOR, tuned=False, list_length=5, max_replicas=8)
    assert [t["metadata"]["listName"] for t in so["spec"]["triggers"]] == ["content_generation"]
    assert "pollingInterval" not in so["spec"] and "advanced" not in so["spec"]


def test_start_up_counts_only_pods_made_while_work_waited() -> None:
    from bench.real_runs import to_first_task

    published = {"a": 10.0, "b": 30.0}
    starts = [Attempt("a", "p1", 16.0), Attempt("b", "p2", 30.5)]
    pods = [PodLife("p1", 12.0, 20.0, None), PodLife("p2", 20.0, 25.0, None)]  # p2 was made when nothing waited
    assert to_first_task(published, starts, pods) == 4.0
