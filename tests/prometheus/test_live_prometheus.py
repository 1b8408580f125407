"""A real Prometheus scrapes a live system (real redis-server, real prefork `celery worker` processes,
the monitoring worker's endpoint) under a load that moves every metric, and every expression of our
dashboard and alerts, and of celery-exporter's celery-mixin, is evaluated through its HTTP API.

The load: tasks that succeed on every consumed queue, tasks that retry and then fail for good (dead
letters), an unknown task (rejected), an expired one (revoked), a backlog of over 100 tasks on a
queue nobody consumes plus a message published two hours ago, a worker killed with SIGKILL (down),
a second queue service whose Redis is unreachable, and the operator's metrics endpoint
(operator/bookgen_operator/controller/opmetrics.py, fed by direct calls: no kopf operator runs here), stopped at
the end. Each step happens in three phases a few scrapes apart, so counters rise inside the window
(increase() ignores a series' first sample).

Prometheus labels the targets as the Prometheus Operator would for a BookGenQueue named `celery` in
namespace `books` (job and service `celery-metrics`): celery-mixin's alerts select
`job=~".*celery.*"`.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from bookgen_operator.controller import opmetrics
from bookgen_operator.core.resources.monitoring import scope_expr
from bookgen_worker.config import Settings
from bookgen_worker.metrics import collector
from bookgen_worker.metrics.exporter import make_registry
from celery import Celery
from kombu import Connection
from prometheus_client import start_http_server

from tests.support import celery_mixin, grafana_eval
from tests.support.alert_rules import operator_groups, queue_groups
from tests.support.grafana_eval import Result, Window
from tests.support.metrics_scrape import scrape, value
from tests.support.prometheus import PrometheusAPI, Target, start_prometheus
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for
from tests.support.workers import REPO_ROOT, WorkerProcess, start_worker

ASSETS = Path(collector.__file__).parent / "assets"
NAMESPACE, SERVICE = "books", "celery-metrics"
BACKLOG_PER_PHASE = 45  # three phases: 135 waiting in `export`, over the mixin's 100 and our 50
MIXIN_EXPLAINED = celery_mixin.EXPLAINED


@contextmanager
def http_endpoint(registry: Any = None) -> Iterator[tuple[int, Any]]:
    port = free_port()
    server, _thread = (start_http_server(port, addr="127.0.0.1", registry=registry) if registry is not None
                      else start_http_server(port, addr="127.0.0.1"))
    try:
        yield port, server
    finally:
        server.shutdown()
        server.server_close()


def workers_env(port: int | None = None) -> dict[str, str]:
    # The caller's PYTHONPATH kept after ours: with it the workers run the checkout under test, not
    # whatever copy of the packages the environment has installed.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))}
    if port is not None:
        env.update(BOOKGEN_METRICS_PORT=str(port), BOOKGEN_POOL="monitoring")
    else:
        env["BOOKGEN_METRICS_PORT"] = "off"
    return env


def publish_old_message(app: Celery, queue: str, age: float) -> None:
    """A task message whose publish stamp is `age` seconds old (Celery's own publish would restamp it)."""
    task_id = str(uuid.uuid4())
    with Connection(app.conf.broker_url, transport_options=app.conf.broker_transport_options) as conn:
        conn.Producer().publish(
            [["stuck"], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
            exchange=queue, routing_key=queue, serializer="json", declare=[app.amqp.queues[queue]],
            headers={"lang": "py", "task": "bookgen.probe.record", "id": task_id, "root_id": task_id,
                     "parent_id": None, "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test",
                     "bookgen_sent_at": time.time() - age},
        )


def send(app: Celery, name: str, queue: str, *args: Any, **options: Any) -> None:
    app.send_task(name, args=list(args), queue=queue, routing_key=queue, **options)


def load_phase(app: Celery, phase: int) -> None:
    for queue in ("high_priority", "content_generation", "validation", "default"):
        for i in range(3):
            send(app, "bookgen.probe.record", queue, f"{queue}-{phase}-{i}", 0.05 * i)
    send(app, "bookgen.get_queue_stats", "monitoring")
    for i in range(2):
        send(app, "bookgen.probe.always_fails", "validation", f"fails-{phase}-{i}")
    send(app, "bookgen.no_such_task", "default", phase)
    send(app, "bookgen.probe.record", "default", f"expired-{phase}",
         expires=datetime.now(UTC) - timedelta(seconds=5))
    for i in range(BACKLOG_PER_PHASE):
        send(app, "bookgen.probe.record", "export", f"backlog-{phase}-{i}")


def operator_phase(phase: int) -> None:
    """What the operator records while it reconciles and autoscales one BookGenQueue."""
    with opmetrics.reconcile_timer("resume" if phase == 1 else "timer") as outcome:
        outcome["result"] = "ok"
    opmetrics.count_write("patch", "Deployment")
    opmetrics.count_error("SecretNotFound")
    with opmetrics.reconcile_timer("update") as outcome:
        outcome["result"] = "error"
    opmetrics.record_pool(NAMESPACE, SERVICE, "content", 2 + phase, 2)


FAILS = "bookgen.probe.always_fails"
DEAD_LETTERED = f'sum(bookgen_tasks_dead_lettered_total{{task="{FAILS}", service="{SERVICE}"}})'


def phase_done(url: str, phase: int) -> bool:
    samples = scrape(url)
    succeeded = value(samples, "bookgen_tasks_succeeded_total", task="bookgen.probe.record", queue="validation")
    dead = value(samples, "bookgen_tasks_dead_lettered_total", task=FAILS, queue="validation")
    return (succeeded or 0) >= 3 * phase and (dead or 0) >= 2 * phase


def prometheus_has(api: PrometheusAPI, expr: str, expected: float) -> bool:
    result = api.instant(expr)
    return bool(result) and float(result[0]["value"][1]) >= expected


@pytest.fixture
def live_results(celery_app: Celery, redis_client: redis.Redis, workdir: Path) -> Iterator[dict[str, list[Result]]]:
    app = celery_app
    with ExitStack() as stack:
        op_port, op_server = stack.enter_context(http_endpoint())
        # A maxmemory, as every managed Redis has (the session's Redis has none; put back at the end).
        redis_client.config_set("maxmemory", str(2**30))
        stack.callback(lambda: redis_client.config_set("maxmemory", "0"))
        dead = Settings(redis_url=f"redis://:x@127.0.0.1:{free_port()}/0")
        broken_port, _ = stack.enter_context(http_endpoint(make_registry(dead)))
        metrics_port = free_port()
        workers: list[WorkerProcess] = []
        stack.callback(lambda: [w.stop() for w in workers])
        redis_url = app.conf.broker_url
        workers.append(start_worker(redis_url=redis_url, queues=["monitoring"], name="monitoring", workdir=workdir,
                                    concurrency=2, extra_env=workers_env(metrics_port)))
        workers.append(start_worker(redis_url=redis_url, queues=["high_priority", "content_generation"],
                                    name="content", workdir=workdir, concurrency=2, extra_env=workers_env()))
        workers.append(start_worker(redis_url=redis_url, queues=["validation", "default"], name="validation",
                                    workdir=workdir, concurrency=2, extra_env=workers_env()))
        doomed = start_worker(redis_url=redis_url, queues=["high_priority"], name="doomed", workdir=workdir,
                              pool="solo", host="doomed-host", extra_env=workers_env())
        workers.append(doomed)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: _answers(url), timeout=30, what="the monitoring worker's endpoint")

        labels = {"namespace": NAMESPACE, "service": SERVICE, "pod": "celery-worker-monitoring-0"}
        targets = [
            Target(SERVICE, f"127.0.0.1:{metrics_port}", labels),
            Target("broken-metrics", f"127.0.0.1:{broken_port}", {"namespace": NAMESPACE, "service": "broken-metrics"}),
            Target("bookgen-operator", f"127.0.0.1:{op_port}",
                   {"namespace": "bookgen-system", "service": "bookgen-operator", "pod": "bookgen-operator-0"}),
        ]
        prom_dir = workdir / "prometheus"
        prom_dir.mkdir()
        api = stack.enter_context(start_prometheus(prom_dir, targets))
        start = time.time()
        wait_for(lambda: set(api.targets_up().values()) == {"up"}, timeout=30, what="every target scraped")
        publish_old_message(app, "export", age=7200)

        for phase in (1, 2, 3):
            operator_phase(phase)
            load_phase(app, phase)
            wait_for(lambda n=phase: phase_done(url, n), timeout=90, what=f"phase {phase} to run and be flushed")
            wait_for(lambda n=phase: prometheus_has(api, DEAD_LETTERED, 2 * n), timeout=30,
                     what=f"prometheus to scrape phase {phase}")
            if phase == 2:
                doomed.process.send_signal(signal.SIGKILL)
                doomed.process.wait(timeout=10)
                workers.remove(doomed)
                wait_for(lambda: prometheus_has(api, 'count(celery_worker_up{hostname="doomed-host"} == 0)', 1),
                         timeout=40, what="the killed worker to be reported down")
        op_server.shutdown()  # the operator goes away: BookGenOperatorDown's expression has data
        op_server.server_close()
        wait_for(lambda: api.targets_up().get("bookgen-operator") == "down", timeout=20, what="operator target down")
        wait_for(lambda: bool(api.instant("bookgen_operator_reconcile_duration_seconds_count")) is False,
                 timeout=20, what="the operator's series to go stale")
        operator_down = next(r for g in operator_groups() for r in g["rules"]
                             if r["alert"] == "BookGenOperatorDown")["expr"]
        ends: list[float] = []

        def operator_seen_gone() -> bool:  # on the 1 s grid the range queries use, not only at "now"
            ends.append(time.time())
            return any(s["values"] for s in api.range(operator_down, start, ends[-1], 1.0))

        wait_for(operator_seen_gone, timeout=30, what="the operator to be seen gone")
        window = Window(start=start, end=ends[-1])
        yield evaluate(api, window)


def _answers(url: str) -> bool:
    try:
        scrape(url)
    except Exception:
        return False
    return True


def evaluate(api: PrometheusAPI, window: Window) -> dict[str, list[Result]]:
    dashboard = json.loads((ASSETS / "dashboard.json").read_text())
    queue_rules = [r for g in queue_groups() for r in g["rules"]]  # thresholds at their defaults
    operator_rules = [r for g in operator_groups() for r in g["rules"]]
    for rule in queue_rules:
        if rule["alert"] == "BookGenMetricsAbsent":
            # As the operator deploys it: scoped to one BookGenQueue, here one whose endpoint is not scraped.
            rule["expr"] = scope_expr(rule["expr"], f'namespace="{NAMESPACE}",service="gone-metrics"')
        if rule["alert"] == "BookGenRedisMemoryHigh":
            # The live Redis is far from full (a few MB of 1 GiB): this proves the ratio has data, and
            # tests/prometheus/alerts_test.yaml that it fires at the threshold.
            rule["expr"] = rule["expr"].replace("> 90", "> 0")
    ours = grafana_eval.evaluate_dashboard(api, "bookgen-queues", dashboard, window)
    ours += grafana_eval.evaluate_alerts(api, queue_rules + operator_rules, window)
    mixin = celery_mixin.evaluate(api, window)
    # The evaluation can fail: a metric nobody exports returns nothing, and a syntax error is reported.
    controls = grafana_eval.evaluate_alerts(api, [{"alert": "unknown metric", "expr": "celery_task_lost_total > 0"},
                                                  {"alert": "syntax error", "expr": "sum(rate(x[5m])"}], window)
    return {"ours": ours, "mixin": mixin, "controls": controls}


def test_every_dashboard_and_alert_expression_parses_and_returns_data(
    live_results: dict[str, list[Result]], capsys: pytest.CaptureFixture[str]
) -> None:
    ours, mixin = live_results["ours"], live_results["mixin"]
    returned = [r for r in mixin if r.ok]
    missing = [r for r in mixin if not r.ok]
    with capsys.disabled():
        print(f"\nour dashboard and alerts: {sum(r.ok for r in ours)} of {len(ours)} expressions return data")
        print(grafana_eval.report(ours))
        print(f"celery-mixin: {len(returned)} of {len(mixin)} expressions return data against the live system")
        for r in missing:
            print(f"  not returning: {r.source} {r.title}: {r.error or MIXIN_EXPLAINED.get(r.title, r.note)}")
    unknown, syntax = live_results["controls"]
    assert not unknown.returned and unknown.error is None and syntax.error is not None
    assert all(r.error is None for r in ours + mixin), [r for r in ours + mixin if r.error]
    assert [r.title for r in ours if not r.ok] == []
    # every celery-mixin expression that can return data on a single-cluster Prometheus does
    assert {r.title for r in missing} <= set(MIXIN_EXPLAINED), [(r.source, r.title) for r in missing]
    assert len(mixin) == 59  # 27 + 4 variables (overview), 20 + 5 (by task), 3 alerts
