"""The Prometheus path on the real node (issue 25, acceptances 3 and 4), with the real Prometheus Operator.

The Prometheus Operator (built from its module) runs a Prometheus (Debian's) that selects ServiceMonitors
and PrometheusRules by `release: kps` in every namespace, as kube-prometheus-stack's defaults do
(tests/cluster/prometheus_operator.py). Our chart is installed with that label on its monitoring objects
(`monitoring.labels`, the chart README's kube-prometheus-stack recipe), so what we ship is found with no
hand-made scrape configuration:

- our autoscaler with `source: prometheus` scales a pool from that Prometheus, and when the Prometheus is
  deleted mid-run it holds the pool (the documented fallback) and says so in status;
- the queue's and the operator's rules are loaded (rules API), a stuck queue fires its alert there, and
  under a load that moves every metric each expression of our dashboard and alerts (and of celery-mixin)
  returns data from that Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bookgen_worker.metrics import collector

from tests.cluster import operator_pods, prometheus_operator, prometheus_stack
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.product import Queue, delete_queue_and_namespace, restricted_namespace
from tests.cluster.prometheus_stack import CHART_VALUES, Stack
from tests.cluster.test_real_node_work import slow_pools
from tests.support import celery_mixin, grafana_eval
from tests.support.alert_rules import operator_groups
from tests.support.grafana_eval import Window
from tests.support.waiting import wait_for

PO = prometheus_operator
ASSETS = Path(collector.__file__).parent / "assets"


@pytest.fixture(scope="module")
def stack(cluster: Cluster) -> Iterator[Stack]:
    installed = prometheus_stack.install(cluster)
    try:
        yield installed
    finally:
        prometheus_stack.remove(installed)


@pytest.fixture(scope="module")
def operator(cluster: Cluster, stack: Stack) -> Iterator[operator_pods.OperatorPods]:
    """The chart's operator, one replica, autoscaler on, its monitoring objects labelled for `kps`."""
    system = restricted_namespace(cluster, "bookgen-system")
    chart = operator_pods.install(cluster, system, system.replace("-system", ""), *CHART_VALUES, replicas=1)
    op = operator_pods.OperatorPods(cluster, chart, audit_mark=cluster.audit.mark())
    try:
        wait_for(op.leader, timeout=120, interval=0.5, what="the operator running and leading")
        yield op
    finally:
        if op.pods():
            operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


#: celery-mixin expressions this load does not make true on the cluster, with why; each one returns data
#: in tests/prometheus/test_live_prometheus.py, where a worker process can be killed for good.
NOT_PROVOKED_HERE = {
    "CeleryWorkerDown": "celery_worker_up == 0 needs a worker gone without its warm shutdown (which unregisters "
                        "it) and not restarted: the kubelet restarts a killed container under the same hostname",
}


def monitors(cluster: Cluster, namespace: str) -> list[tuple[str, dict[str, str]]]:
    """The ServiceMonitors of a namespace and their labels (what a Prometheus selects by)."""
    found = cluster.custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", namespace, "servicemonitors")
    return [(m["metadata"]["name"], m["metadata"].get("labels", {})) for m in found["items"]]


#: The chart's PrometheusRule: the operator's own alerts.
OPERATOR_ALERTS = {r["alert"] for g in operator_groups() for r in g["rules"]}


def queue_rule_groups(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The rule groups of the PrometheusRule the operator made for a queue (scoped, thresholds filled in)."""
    rule = cluster.custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", namespace, "prometheusrules",
                                                       name)
    return list(rule["spec"]["groups"])


def dashboard() -> dict[str, Any]:
    return dict(json.loads((ASSETS / "dashboard.json").read_text()))


def pool(queue: Queue, name: str) -> dict[str, Any]:
    return dict(((queue.body().get("status") or {}).get("pools") or {}).get(name) or {})


def test_source_prometheus_scales_from_the_operators_prometheus_and_holds_when_it_is_deleted(
    cluster: Cluster, stack: Stack, operator: operator_pods.OperatorPods
) -> None:
    """Acceptance 3: the Prometheus found the queue's ServiceMonitor by its label (no scrape config of
    ours); the autoscaler reads it; deleting the Prometheus mid-run holds the pool where it is, with the
    reason in status, and the job still completes."""
    queue = Queue(cluster, restricted_namespace(cluster, "prom-source"), "scaled")
    try:
        queue.create({
            "autoscaling": {"source": "prometheus", "prometheusUrl": PO.URL},
            "beat": {"enabled": False}, "flower": {"enabled": False},
            "pools": slow_pools(8, minReplicas=1, maxReplicas=3, autoscaling={
                "targetPerSlot": 1, "targetWaitSeconds": 0, "scaleDownWindowSeconds": 300}),
        })  # fmt: skip
        queue.wait_ready(timeout=240)
        job_name = f"{queue.name}-metrics"
        wait_for(lambda: stack.jobs_up().get(job_name) == "up", timeout=120, interval=2,
                 what=f"the Prometheus scraping {job_name} through the queue's ServiceMonitor "
                      f"(targets: {stack.jobs_up()}, {monitors(cluster, queue.namespace)})")
        with queue.redis_port() as port:
            job = queue.submit(port, "Katherine Johnson", "--chapters", "6", "--parallel", "6", "--formats", "md")
            wait_for(lambda: queue.replicas("content") == 3, timeout=120, interval=0.5,
                     what="the content pool scaled out to 3 from Prometheus's numbers")
            assert "metrics" not in str(pool(queue, "content").get("reason", "")), pool(queue, "content")
            kubectl(cluster, "delete", "prometheus", PO.PROMETHEUS, "-n", PO.NAMESPACE, "--wait=true")
            wait_for(lambda: not stack.prometheus_pods(), timeout=120, interval=1, what="the Prometheus pod gone")
            wait_for(lambda: "metrics missing" in str(pool(queue, "content").get("reason", "")), timeout=60,
                     interval=1, what="the content pool's status to say its metrics are missing")
            held = queue.replicas("content")
            assert held == 3, f"the pool moved to {held} without metrics"
            final = queue.wait_job(port, job, timeout=300)
            assert final["state"] == "COMPLETED", final
            assert queue.replicas("content") == 3, "the pool was scaled in blind"
        print(f"content pool while Prometheus was gone: {pool(queue, 'content')}")
    finally:
        delete_queue_and_namespace(cluster, queue)
        if not stack.prometheus_pods():
            prometheus_stack.start_prometheus(cluster)


#: Alert thresholds short enough for a test to see each rule true (a queue's spec.metrics.alerts).
FAST_ALERTS = {
    "backlogGrowingFor": "30s", "backlogMinPending": 0, "oldestTaskSeconds": 10, "oldestTaskFor": "10s",
    "deadLettersFor": "5s", "noWorkersFor": "10s", "measurementsStaleSeconds": 15, "measurementsStaleFor": "5s",
    "metricsAbsentFor": "5s", "redisMemoryPercent": 0, "redisMemoryFor": "5s",
}  # fmt: skip
#: A fifth pool, consuming `default` (which no default pool does), whose text generator is refused at
#: once (nothing listens on the pod's port 9): its chapters fail, retry and are dead-lettered.
FLAKY_POOL = {"name": "flaky", "queues": ["default"], "concurrency": 1, "minReplicas": 1, "maxReplicas": 1,
              "generator": {"type": "openai", "openai": {"baseUrl": "http://127.0.0.1:9/v1", "model": "none",
                                                         "timeoutSeconds": 5}}}

#: Failing tasks retry once after 1 s, then go to the dead letters (the shipped policy waits minutes).
FAST_RETRIES = [{"name": "BOOKGEN_RETRY_BACKOFF_BASE", "value": "1"}, {"name": "BOOKGEN_MAX_RETRIES", "value": "1"},
                {"name": "BOOKGEN_RETRY_JITTER", "value": "false"}]


@contextlib.contextmanager
def producer(queue: Queue, port: int) -> Iterator[Any]:
    """A Celery app as a user's own producer would use it, sending through the queue's Redis."""
    from celery import Celery

    app = Celery(broker=queue.redis_url(port))
    try:
        yield app
    finally:
        app.close()


def send(app: Any, name: str, target: str, *args: Any, **options: Any) -> None:
    app.send_task(name, args=list(args), queue=target, routing_key=target, **options)


def rule_true(stack: Stack, expr: str, since: float) -> bool:
    return any(s["values"] for s in stack.api.range(expr, since, time.time(), 2.0))


def firing(stack: Stack, alert: str, namespace: str) -> bool:
    return any(a["labels"].get("alertname") == alert and a["labels"].get("namespace") == namespace
               and a["state"] == "firing" for a in stack.alerts())


def test_our_rules_load_a_stuck_queue_fires_and_every_dashboard_and_alert_expression_returns_data(
    cluster: Cluster, stack: Stack, operator: operator_pods.OperatorPods, capsys: pytest.CaptureFixture[str]
) -> None:
    """Acceptance 4. The load moves every metric and makes every rule true once: a book (sent, run,
    succeeded), a task that fails, retries and is dead-lettered, an unknown task, a queue stuck with no
    content worker (paused, then scaled to 0 by hand: its alert fires), the Redis pod deleted, a queue
    whose Secret is missing (reconcile errors), the queue deleted (its metrics absent) and the operator
    stopped (down)."""
    start = time.time()
    # Named so its job (`celery-metrics`) matches celery-mixin's default selector, job=~".*celery.*".
    queue = Queue(cluster, restricted_namespace(cluster, "prom-eval"), "celery")
    ns, service = queue.namespace, f"{queue.name}-metrics"
    scope = f'namespace="{ns}",service="{service}"'
    broken = Queue(cluster, ns, "broken")
    try:
        queue.create({"env": FAST_RETRIES, "metrics": {"alerts": {"thresholds": FAST_ALERTS}},
                      "pools": [*slow_pools(2, minReplicas=1, maxReplicas=2), FLAKY_POOL]})
        queue.wait_ready(timeout=240)
        wait_for(lambda: stack.jobs_up().get(service) == "up", timeout=120, interval=2,
                 what=f"the Prometheus scraping {service}")
        ours = {r["alert"] for g in queue_rule_groups(cluster, ns, queue.name) for r in g["rules"]}
        wait_for(lambda: ours | OPERATOR_ALERTS <= stack.rule_names(), timeout=120, interval=2,
                 what=f"the rules {sorted(ours | OPERATOR_ALERTS)} loaded (have {sorted(stack.rule_names())})")
        broken.create({"redis": {"passwordSecretRef": {"name": "no-such-secret", "key": "password"}}})
        with queue.redis_port() as port:
            job = queue.submit(port, "Rosalind Franklin", "--chapters", "2", "--formats", "md")
            assert queue.wait_job(port, job)["state"] == "COMPLETED"
            # Failures: refused input, an unknown task, a chapter whose generator is refused (retried, then
            # failed), each twice and a few scrapes apart; an expired task (revoked).
            with producer(queue, port) as app:
                for n in (3, 6):  # twice, the second after Prometheus scraped the first (increase() sees it)
                    send(app, "bookgen.regenerate_chapter", "content_generation", {}, "shorter", "Nobody")
                    send(app, "bookgen.no_such_task", "validation", 1)
                    send(app, "bookgen.generate_chapter", "default", "Nobody", 1)
                    counted = f"sum(bookgen_tasks_dead_lettered_total{{{scope}}}) >= {n}"
                    wait_for(lambda counted=counted: stack.api.instant(counted), timeout=120, interval=2,
                             what=f"{n} dead letters scraped")
                send(app, "bookgen.get_queue_stats", "monitoring", expires=datetime.now(UTC) - timedelta(seconds=5))

            # Stuck: paused for maintenance, and the content pool scaled to 0 by hand.
            queue.annotate({"bookgen.io/paused": "true"})
            wait_for(lambda: queue.condition("Autoscaling").get("reason") == "Paused", timeout=30, interval=0.5,
                     what="the queue paused")
            cluster.apps.patch_namespaced_deployment_scale(f"{queue.name}-worker-content", ns,
                                                           {"spec": {"replicas": 0}})
            wait_for(lambda: not queue.pods("content"), timeout=120, interval=1, what="no content worker left")
            stuck = queue.submit(port, "Lise Meitner", "--chapters", "3", "--formats", "md")
            with producer(queue, port) as app:
                for _ in range(110):  # over celery-mixin's queue-length threshold (100)
                    send(app, "bookgen.health_check", "high_priority")
            oldest = f"max by (queue) (bookgen_queue_oldest_pending_age_seconds{{{scope}}})"
            for alert in ("BookGenNoWorkersForQueue", "BookGenOldestTaskTooOld"):
                wait_for(lambda alert=alert: firing(stack, alert, ns), timeout=180, interval=2,
                         what=f"{alert} firing for the stuck queue (oldest: {stack.api.instant(oldest)}, "
                              f"pending: {queue.bookgen(port, 'status').stdout})")
            queue.annotate({"bookgen.io/paused": None})
            assert queue.wait_job(port, stuck, timeout=300)["state"] == "COMPLETED"

        # Redis down for a moment: the measurements say so (bookgen_redis_up 0).
        def redis_seen_down() -> bool:
            if rule_true(stack, f"min(bookgen_redis_up{{{scope}}}) == 0", start):
                return True
            cluster.core.delete_namespaced_pod(f"{queue.name}-redis-0", ns, grace_period_seconds=0)
            return False

        wait_for(redis_seen_down, timeout=300, interval=20, what="Prometheus to see the queue's Redis down")
        queue.wait_ready(timeout=240)
        wait_for(lambda: rule_true(stack, "sum(increase(bookgen_operator_reconcile_errors_total[15m])) > 0", start),
                 timeout=120, interval=2, what="the operator's reconcile errors for the missing Secret")
        groups = queue_rule_groups(cluster, ns, queue.name)
    finally:
        delete_queue_and_namespace(cluster, queue)
    absent = next(r["expr"] for g in groups for r in g["rules"] if r["alert"] == "BookGenMetricsAbsent")
    wait_for(lambda: rule_true(stack, absent, start), timeout=120, interval=2, what="the queue's metrics absent")
    operator_pods.stop_and_check(cluster, operator)
    down = next(r["expr"] for g in operator_groups() for r in g["rules"] if r["alert"] == "BookGenOperatorDown")
    wait_for(lambda: rule_true(stack, down, start), timeout=120, interval=2, what="the operator seen down")

    # Grafana's $__rate_interval with kube-prometheus-stack's datasource (30 s scrape interval): 120 s.
    window = Window(start=start, end=time.time(), step=2.0, rate_interval="120s")
    rules = [r for g in groups for r in g["rules"]] + [r for g in operator_groups() for r in g["rules"]]
    results = grafana_eval.evaluate_dashboard(stack.api, "bookgen-queues", dashboard(), window)
    results += grafana_eval.evaluate_alerts(stack.api, rules, window)
    mixin = celery_mixin.evaluate(stack.api, window)
    with capsys.disabled():
        print(f"\nfrom the Prometheus Operator's Prometheus: {sum(r.ok for r in results)} of {len(results)} "
              f"expressions of our dashboard and alerts return data")
        print(grafana_eval.report(results))
        print(f"celery-mixin: {sum(r.ok for r in mixin)} of {len(mixin)} return data")
        print(grafana_eval.report([r for r in mixin if not r.ok]))
    assert all(r.error is None for r in results + mixin), [r for r in results + mixin if r.error]
    assert [r.title for r in results if not r.ok] == []
    explained = {**celery_mixin.EXPLAINED, **NOT_PROVOKED_HERE}
    assert {r.title for r in mixin if not r.ok} <= set(explained), [r.title for r in mixin if not r.ok]
