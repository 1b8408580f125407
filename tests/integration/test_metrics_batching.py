"""The metrics signal handlers cost no Redis command on a task's hot path, and their batches survive
a warm shutdown: every count reaches Redis exactly once."""

from __future__ import annotations

import signal
from pathlib import Path

import redis
from celery import Celery

from tests.support.waiting import wait_for
from tests.support.workers import start_worker

TASKS = 200
METRIC_COMMANDS = ("cmdstat_hincrby", "cmdstat_hincrbyfloat")


def metric_writes(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats[name]["calls"]) for name in METRIC_COMMANDS if name in stats)


def counts(client: redis.Redis, key: str) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in client.hgetall(key).items()}


def test_counts_are_exact_after_a_warm_shutdown_and_cost_far_less_than_a_command_per_task(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    worker = start_worker(redis_url=celery_app.conf.broker_url, queues=["validation"], name="batch",
                          workdir=workdir, concurrency=2, extra_env={"BOOKGEN_METRICS_PORT": "off"})
    try:
        redis_client.config_resetstat()
        results = [celery_app.send_task("bookgen.probe.record", args=[f"t{i}"], queue="validation",
                                        routing_key="validation") for i in range(TASKS)]
        for result in results:
            result.get(timeout=60)
        # Warm shutdown at once: the children and the main process still hold unflushed batches.
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0
    finally:
        worker.stop()
    from bookgen_worker.metrics.signals import flush

    assert flush()  # this process sent the tasks: its `sent` counts
    ours = counts(redis_client, "bookgen:metrics:tasks")
    assert ours["sent|bookgen.probe.record|validation"] == TASKS
    assert ours["succeeded|bookgen.probe.record|validation"] == TASKS
    runtime = counts(redis_client, "bookgen:metrics:runtime")
    assert runtime["bookgen.probe.record|validation|count"] == TASKS
    celery = counts(redis_client, "bookgen:metrics:celery:tasks")
    for kind in ("received", "started", "succeeded"):
        assert celery[f"{kind}|bookgen.probe.record|test|validation|"] == TASKS, kind
    # Before batching: 6 commands per task (4 HINCRBY + HINCRBYFLOAT + the pipeline's MULTI/EXEC).
    writes = metric_writes(redis_client)
    assert writes < 2 * TASKS, f"{writes} metric writes for {TASKS} tasks"  # by flush, not by task
    wait_for(lambda: worker.process.poll() is not None, timeout=5, what="the worker to be gone")
