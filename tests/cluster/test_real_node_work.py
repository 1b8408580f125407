"""Work on the real node under change (issue 21, acceptances 4 and 5): the autoscaler with the spec's
default source scales a pool on a real backlog; a scale-in that takes busy workers lets the kubelet's
SIGTERM start Celery's warm shutdown, and their tasks finish and are acknowledged; the Redis pod
deleted mid-job comes back on its volume and the job completes. Nothing lost, nothing run twice.

Chapters are made slow with the offline generator's own setting (`BOOKGEN_OFFLINE_SECONDS`, given to
the content pool through `spec.pools[].env`), so that the workers are busy when it matters.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from bookgen_operator.core.autoscaler.pause import PAUSED
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS

from tests.cluster import operator_pods
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    """The chart's operator, two replicas, the autoscaler on (the chart's default)."""
    system = restricted_namespace(cluster, "bookgen-system")
    chart = operator_pods.install(cluster, system, system.replace("-system", ""))
    op = operator_pods.start(cluster, chart, env={"BOOKGEN_AUTOSCALER": "on"})
    try:
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


def slow_pools(seconds: float, **content: Any) -> list[dict[str, Any]]:
    pools = copy.deepcopy(DEFAULT_POOLS)
    for pool in pools:
        if pool["name"] == "content":
            pool.update({"concurrency": 1, "env": [{"name": "BOOKGEN_OFFLINE_SECONDS", "value": str(seconds)}],
                         **content})
    return pools


@pytest.fixture
def queue(cluster: Cluster, operator: operator_pods.OperatorPods) -> Iterator[Queue]:
    q = Queue(cluster, restricted_namespace(cluster, "work"), "slow")
    try:
        yield q
    finally:
        delete_queue_and_namespace(cluster, q)


def _time(stamp: Any) -> float:
    return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


#: Workers send task events from their start (Flower otherwise turns them on every few seconds, and a
#: pod that starts in between is missing from its view): a user's setting, through spec.env.
TASK_EVENTS = [{"name": "BOOKGEN_TASK_EVENTS", "value": "true"}]
CHAPTER = "bookgen.generate_chapter"


def chapters_once(tasks: list[dict[str, Any]], chapters: int) -> Counter[int]:
    """How often each chapter ran to success in Flower's view; none failed or was retried."""
    generated = [t for t in tasks if t.get("name") == CHAPTER]
    assert all(t.get("state") == "SUCCESS" for t in generated), [(t["state"], t.get("exception")) for t in generated]
    counts = Counter(int(str(t["args"]).split(",")[1]) for t in generated)
    assert counts == Counter(range(1, chapters + 1)), f"chapters run: {counts}"
    return counts


def counted_exactly(queue: Queue, before: float, n: int) -> None:
    """The workers' own counter of chapters run (kept in Redis) grew by exactly n."""
    wait_for(lambda: queue.counted("succeeded", CHAPTER) - before >= n, timeout=30, interval=1,
             what="the workers' counters to catch up")
    assert queue.counted("succeeded", CHAPTER) - before == n, "a chapter ran twice"


def test_the_default_source_scales_out_on_a_backlog_and_scale_in_spares_the_busy(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Acceptance 4, first half: with `autoscaling.source` unset (auto: the queue's metrics Service,
    reached by the operator pod through its name and cluster DNS) a backlog of slow chapters scales
    the content pool out; new pods run chapters; when the backlog is gone the pool scales back in,
    and only workers that were idle are deleted."""
    queue.create({"env": TASK_EVENTS, "pools": slow_pools(6, minReplicas=1, maxReplicas=3,
                                                          autoscaling={"targetPerSlot": 1, "targetWaitSeconds": 0,
                                                                       "scaleDownWindowSeconds": 5})})
    queue.wait_ready()
    before = queue.counted("succeeded", CHAPTER)
    mark = cluster.audit.mark()
    with queue.redis_port() as port:
        queue.enable_task_events(port)
        job = queue.submit(port, "Grace Hopper", "--chapters", "6", "--parallel", "6", "--formats", "md")
        wait_for(lambda: queue.replicas("content") == 3, timeout=60, interval=0.5,
                 what="the content pool scaled out to 3 on its backlog")
        final = queue.wait_job(port, job)
        assert final["state"] == "COMPLETED", final
        wait_for(lambda: queue.replicas("content") == 1 and len(queue.pods("content")) == 1, timeout=120,
                 interval=1, what="the content pool scaled back in to 1")
    scaled = [w for w in cluster.audit.settled_writes(operator.chart.username, since=mark)
              if w.resource == "deployments" and w.name == f"{queue.name}-worker-content"]
    assert scaled, "the operator itself wrote the replica counts"
    tasks = queue.tasks_of_job(job)
    chapters_once(tasks, 6)
    counted_exactly(queue, before, 6)
    ran_chapters = {str(t["worker"]).partition("@")[2] for t in tasks if t["name"] == "bookgen.generate_chapter"}
    assert len(ran_chapters) >= 2, f"chapters ran on {ran_chapters}: the new pods took work"
    # The pods it removed were idle when it decided; one may still take a task in the second before the
    # kubelet stops it (seen here: an introduction that started as the pod was chosen). Such a task must
    # then finish in the warm shutdown: every task of the job succeeded, none twice.
    assert all(t.get("state") == "SUCCESS" for t in tasks), [(t["name"], t.get("state")) for t in tasks]
    once = Counter((t["name"], str(t["args"])) for t in tasks if t["name"] != "bookgen.job.step_done")
    assert max(once.values()) == 1, [k for k, n in once.items() if n > 1]
    events = cluster.core.list_namespaced_event(queue.namespace, field_selector="reason=Killing").items
    killed = {e.involved_object.name: _time(e.first_timestamp or e.event_time) for e in events}
    caught = [t for t in tasks if (pod := str(t["worker"]).partition("@")[2]) in killed
              and float(t.get("started") or 0) < killed[pod] < float(t.get("succeeded") or 0)]
    if caught:
        print("finished in a warm shutdown after the kubelet's SIGTERM:", [(t["name"], t["worker"]) for t in caught])


#: How long a paused queue under a backlog is watched for a scale write (issue 24, acceptance 3).
PAUSE_WINDOW = 60.0


def pool_status(queue: Queue, pool: str) -> dict[str, Any]:
    return dict(((queue.body().get("status") or {}).get("pools") or {}).get(pool) or {})


def test_a_paused_queue_is_not_scaled_under_a_backlog_and_resumes_at_the_next_poll(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Issue 24, acceptance 3: with `bookgen.io/paused` set, a backlog that would scale the content pool
    out makes no scale write for 60 s (audit log) and the status and `kubectl get` say paused; removing
    the annotation scales it out at the next poll, and the job completes with every chapter run once."""
    queue.create({"pools": slow_pools(20, minReplicas=1, maxReplicas=3,
                                      autoscaling={"targetPerSlot": 1, "targetWaitSeconds": 0})})
    queue.wait_ready()
    queue.annotate({PAUSED: "true"})
    wait_for(lambda: queue.condition("Autoscaling").get("reason") == "Paused", timeout=30, interval=0.2,
             what="the Autoscaling condition to say Paused")
    listed = kubectl(cluster, "get", "bookgenqueue", queue.name, "-n", queue.namespace).stdout
    assert "Paused" in listed.splitlines()[1], listed
    deployment = f"{queue.name}-worker-content"
    before = queue.counted("succeeded", CHAPTER)
    mark = cluster.audit.mark()
    with queue.redis_port() as port:
        job = queue.submit(port, "Ada Lovelace", "--chapters", "6", "--parallel", "6", "--formats", "md")
        wait_for(lambda: (pool_status(queue, "content").get("pending") or 0) >= 2, timeout=90, interval=0.5,
                 what="a backlog of chapters in the content pool's status")
        watched_until = time.monotonic() + PAUSE_WINDOW
        while time.monotonic() < watched_until:  # the window is the assertion: the count must not move
            assert queue.replicas("content") == 1, "a paused pool was scaled"
            time.sleep(1)
        status = pool_status(queue, "content")
        assert (status.get("pending") or 0) >= 1, f"the backlog was gone before the window ended: {status}"
        assert "paused at the current replicas" in str(status.get("reason")), status
        writes = [w for w in cluster.audit.writes(operator.chart.username, since=mark)
                  if w.resource == "deployments" and w.name == deployment]
        assert writes == [], f"scale writes while paused: {writes}"
        resumed_at = time.time()
        queue.annotate({PAUSED: None})
        scaled = wait_for(lambda: [w for w in cluster.audit.writes(operator.chart.username, since=mark)
                                   if w.resource == "deployments" and w.name == deployment],
                          timeout=30, interval=0.1, what="a scale write after the pause was lifted")
        after = _time(scaled[0].time) - resumed_at
        print(f"first scale write {after:.2f} s after the annotation was removed (poll interval 1 s)")
        assert after < 3.0, f"scaling resumed {after:.1f} s after the pause was lifted"
        assert queue.replicas("content") > 1
        wait_for(lambda: queue.condition("Autoscaling").get("reason") == "Active", timeout=30, interval=0.2,
                 what="the Autoscaling condition back to Active")
        final = queue.wait_job(port, job, timeout=240)
        assert final["state"] == "COMPLETED", final
    counted_exactly(queue, before, 6)


def test_flower_lists_only_the_live_workers_after_a_pool_scales_1_4_1(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Issue 24, acceptance 6: the content pool scales 1 -> 4 -> 1 (autoscaling off: the reconciler sets
    the replicas from minReplicas); within the purge period Flower's worker list, its status API and
    the dashboard's JSON name only the live content worker (mher/flower #612, #1128 kept them)."""
    purge = 15
    queue.create({"autoscaling": {"enabled": False}, "flower": {"purgeOfflineWorkersSeconds": purge},
                  "pools": slow_pools(1, minReplicas=1, maxReplicas=4)})
    queue.wait_ready()

    def content_workers(path: str) -> set[str]:
        answer = queue.flower(path)
        dashboard = isinstance(answer, dict) and "data" in answer  # /workers?json=1: {"data": [...]}
        names = {w["hostname"] for w in answer["data"]} if dashboard else set(answer)
        return {n for n in names if n.startswith("content@")}

    def live_content() -> set[str]:
        return {f"content@{p.metadata.name}" for p in queue.pods("content")
                if ready(p) and p.metadata.deletion_timestamp is None}

    queue.patch({"pools": slow_pools(1, minReplicas=4, maxReplicas=4)})
    wait_for(lambda: len(live_content()) == 4, timeout=120, interval=1, what="four ready content workers")
    wait_for(lambda: content_workers("/api/workers?refresh=1") == live_content(), timeout=60, interval=1,
             what="Flower to list the four content workers")
    queue.patch({"pools": slow_pools(1, minReplicas=1, maxReplicas=4)})
    wait_for(lambda: len(queue.pods("content")) == 1, timeout=120, interval=1, what="three content pods gone")
    gone_at = time.monotonic()

    def only_the_live_one() -> bool:
        live = live_content()
        return len(live) == 1 and all(content_workers(path) == live for path in
                                      ("/api/workers", "/api/workers?status=1", "/workers?json=1"))

    wait_for(only_the_live_one, timeout=purge * 1.25 + 30, interval=1,
             what="Flower to forget the three stopped content workers")
    print(f"Flower forgot the stopped workers {time.monotonic() - gone_at:.1f} s after their pods were gone "
          f"(purge period {purge} s)")


def test_a_scale_in_that_takes_busy_workers_lets_them_finish_their_tasks(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Acceptance 4, second half: three workers, each in the middle of a 20 s chapter, and the pool
    is scaled in to one (autoscaling off, minReplicas lowered: the reconciler sets the replicas). The
    kubelet sends SIGTERM to the two deleted pods' PID 1, Celery's warm shutdown lets each finish and
    acknowledge its chapter, and the job completes with every chapter run exactly once."""
    queue.create({"env": TASK_EVENTS, "autoscaling": {"enabled": False},
                  "pools": slow_pools(20, minReplicas=3, maxReplicas=3)})
    queue.wait_ready()
    before = queue.counted("succeeded", CHAPTER)
    wait_for(lambda: len([p for p in queue.pods("content") if ready(p)]) == 3, timeout=90, interval=0.5,
             what="three ready content workers")
    with queue.redis_port() as port:
        queue.enable_task_events(port)
        job = queue.submit(port, "Katherine Johnson", "--chapters", "3", "--parallel", "3", "--formats", "md")

        def three_busy() -> bool:
            started = [t for t in queue.tasks_of_job(job) if t["name"] == "bookgen.generate_chapter"
                       and t.get("state") == "STARTED"]
            return len({t["worker"] for t in started}) == 3

        wait_for(three_busy, timeout=60, interval=0.5, what="a chapter running on each of the three workers")
        queue.patch({"pools": slow_pools(20, minReplicas=1, maxReplicas=3)})
        wait_for(lambda: len([p for p in queue.pods("content") if p.metadata.deletion_timestamp]) == 2,
                 timeout=30, interval=0.2, what="two busy content pods being deleted")
        stopping = {p.metadata.name: p.metadata.deletion_timestamp.timestamp() - p.spec.termination_grace_period_seconds
                    for p in queue.pods("content") if p.metadata.deletion_timestamp}
        final = queue.wait_job(port, job, timeout=120)
        assert final["state"] == "COMPLETED", final
        wait_for(lambda: len(queue.pods("content")) == 1, timeout=60, what="the two stopped pods gone")
    tasks = queue.tasks_of_job(job)
    chapters_once(tasks, 3)
    counted_exactly(queue, before, 3)
    finished_after_sigterm = [t for t in tasks if t["name"] == "bookgen.generate_chapter"
                              and str(t["worker"]).partition("@")[2] in stopping
                              and float(t["succeeded"]) > stopping[str(t["worker"]).partition("@")[2]]]
    assert len(finished_after_sigterm) == 2, "each stopped pod finished its chapter after SIGTERM"
    events = {e.involved_object.name for e in cluster.core.list_namespaced_event(
        queue.namespace, field_selector="reason=Killing").items}
    assert set(stopping) <= events, "the kubelet stopped them (Killing events)"


def test_the_redis_pod_deleted_mid_job_comes_back_on_its_volume_and_the_job_completes(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Acceptance 5: the Redis pod is deleted while chapters run; the StatefulSet's new pod mounts the
    same claim (its append-only file keeps the queues and the job), the workers reconnect, and the
    job completes with every chapter run exactly once and nothing in the dead-letter queue. Flower's
    view misses the events of the outage, so "exactly once" is read from the workers' own counters,
    which they keep in Redis."""
    queue.create({"pools": slow_pools(3, minReplicas=1, maxReplicas=1)})
    queue.wait_ready()
    selector = f"app.kubernetes.io/instance={queue.name},app.kubernetes.io/component=redis"
    (redis,) = cluster.core.list_namespaced_pod(queue.namespace, label_selector=selector).items
    claim = next(v.persistent_volume_claim.claim_name for v in redis.spec.volumes if v.persistent_volume_claim)
    volume = cluster.core.read_namespaced_persistent_volume_claim(claim, queue.namespace).spec.volume_name
    before = queue.counted("succeeded", CHAPTER)
    with queue.redis_port() as port:
        job = queue.submit(port, "Hedy Lamarr", "--chapters", "6", "--parallel", "2", "--formats", "md")
        at_delete = wait_for(lambda: (j := queue.job(port, job))["chapters_done"] >= 1 and j, timeout=60,
                             interval=0.5, what="the first chapter written")
    assert at_delete["state"] == "RUNNING" and at_delete["chapters_done"] < 6, at_delete
    cluster.core.delete_namespaced_pod(redis.metadata.name, queue.namespace)

    def replaced() -> Any:
        pods = [p for p in cluster.core.list_namespaced_pod(queue.namespace, label_selector=selector).items
                if p.metadata.uid != redis.metadata.uid and ready(p)]
        return pods[0] if pods else None

    new = wait_for(replaced, timeout=120, interval=0.5, what="a new Redis pod, ready")
    assert next(v.persistent_volume_claim.claim_name for v in new.spec.volumes if v.persistent_volume_claim) == claim
    assert cluster.core.read_namespaced_persistent_volume_claim(claim, queue.namespace).spec.volume_name == volume
    with queue.redis_port() as port:
        final = queue.wait_job(port, job, timeout=180)
        assert final["state"] == "COMPLETED" and final["chapters_done"] == 6 and not final["error"], json.dumps(final)
        dead = queue.bookgen(port, "dlq", "list", "-o", "json")
        assert dead.returncode == 0, dead.stderr
        assert json.loads(dead.stdout or "[]") == [], f"dead letters: {dead.stdout}"
    counted_exactly(queue, before, 6)


def test_a_worker_pod_deleted_in_its_first_seconds_stops_at_once(
    cluster: Cluster, queue: Queue, operator: operator_pods.OperatorPods
) -> None:
    """Found on the real node: a worker's process was PID 1 of its pod, and PID 1 ignores signals it has
    no handler for; Celery installs its handler seconds after it starts, so a pod deleted before that
    (a quick scale-in, a rollout, its namespace deleted) lived out its grace period, an hour. With the
    pause process as PID 1 (shareProcessNamespace) the kubelet's SIGTERM ends it at once."""
    queue.create({})
    queue.wait_ready()
    (first,) = queue.pods("content")
    cluster.core.delete_namespaced_pod(first.metadata.name, queue.namespace)

    def replacement_started() -> Any:
        for pod in queue.pods("content"):
            statuses = pod.status.container_statuses or []
            if pod.metadata.uid != first.metadata.uid and statuses and statuses[0].state.running:
                return pod
        return None

    new = wait_for(replacement_started, timeout=60, interval=0.1, what="the replacement worker's container started")
    assert new.spec.termination_grace_period_seconds > 600, "a worker's grace period covers its longest task"
    deleted = time.monotonic()
    cluster.core.delete_namespaced_pod(new.metadata.name, queue.namespace)
    wait_for(lambda: new.metadata.uid not in {p.metadata.uid for p in queue.pods("content")}, timeout=60,
             interval=0.2, what="the just-started worker gone")
    assert time.monotonic() - deleted < 30
