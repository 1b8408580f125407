"""Beat drives the monitoring tasks; the worker registers itself, touches its heartbeat, and leaves cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.heartbeat import main as heartbeat_main
from bookgen_worker.metrics.workers import read_workers
from celery import Celery

from tests.support.waiting import wait_for
from tests.support.workers import start_worker


def test_beat_refreshes_the_stored_snapshot_and_the_worker_registers_and_beats(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    settings = bookgen_settings(celery_app)
    heartbeat = workdir / "hb" / "heartbeat"
    env = {"BOOKGEN_QUEUE_STATS_INTERVAL": "1", "BOOKGEN_METRICS_PORT": "off",
           "BOOKGEN_HEARTBEAT_FILE": str(heartbeat), "BOOKGEN_POOL": "monitoring", "POD_NAME": "monitoring-pod-0"}
    worker = start_worker(redis_url=celery_app.conf.broker_url, queues=["monitoring"], name="monitoring",
                          workdir=workdir, concurrency=1, extra_env=env)
    beat_log = workdir / "beat.log"
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bookgen_worker.app", "beat", "-s", str(workdir / "beat-schedule"),
         "-l", "INFO", "-f", str(beat_log)],
        env={**os.environ, **env, "REDIS_URL": celery_app.conf.broker_url}, cwd=workdir,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        celery_app.send_task("bookgen.probe.record", args=["x"], queue="export", routing_key="export")
        stored = wait_for(lambda: redis_client.get("bookgen:metrics:snapshot"), timeout=30,
                          what="beat-driven get_queue_stats to store a snapshot")
        assert json.loads(stored)["queues"]["export"]["pending"] == 1
        first = json.loads(stored)["measured_at"]
        wait_for(lambda: json.loads(redis_client.get("bookgen:metrics:snapshot"))["measured_at"] > first,
                 timeout=30, what="the snapshot to be refreshed on the next beat")

        [info] = read_workers(redis_client, settings)
        assert (info.hostname, info.pool, info.pod, info.queues, info.concurrency) == (
            "monitoring@test", "monitoring", "monitoring-pod-0", ("monitoring",), 1)
        assert heartbeat_main(["--check", str(heartbeat), "--max-age", "60"]) == 0
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        worker.stop()
    assert read_workers(redis_client, settings) == []  # a warm shutdown removes the entry at once
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
