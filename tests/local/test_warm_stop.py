"""Stopping a busy worker is a warm shutdown: its running task finishes, once, with SUCCESS.

SIGTERM must reach the worker's main process only: sent to its process group, it also reaches the
prefork pool children, which die at once with their tasks (issue 15, item 5). Both ways `bookgen up`
stops a worker are covered: scale-in (`Supervisor.terminate`, then the grace period) and Ctrl-C
(SIGINT to `bookgen up`, then `stop_all`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis
from bookgen_operator.local.supervisor import Supervisor
from celery import Celery

from tests.local.conftest import Up, spec_yaml
from tests.support import probe_tasks
from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, REPO_ROOT

TASK_SECONDS = 10.0
GRACE = 30.0


def _started(client: redis.Redis, label: str) -> bool:
    return any(event["label"] == label for event in probe_tasks.events(client))


def test_scale_in_of_a_busy_prefork_worker_lets_its_task_finish_once_with_success(
    celery_app: Celery, redis_client: redis.Redis, tmp_path: Path
) -> None:
    supervisor = Supervisor(tmp_path / "state")
    env = {**os.environ, **FAST_TEST_ENV, "REDIS_URL": celery_app.conf.broker_url,
           "BOOKGEN_EXTRA_TASK_MODULES": probe_tasks.MODULE, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, "-m", "celery", "-A", "bookgen_worker.app", "worker", "-Q", "content_generation",
            "-c", "2", "-P", "prefork", "-n", "busy@test", "--without-gossip", "--without-mingle", "-l", "INFO"]
    child = supervisor.start("worker-content-0", argv, env)
    try:
        wait_for(lambda: " ready." in child.log_path.read_text(), timeout=60, what="the worker to be ready")
        result = probe_tasks.record.apply_async(args=("long", TASK_SECONDS), queue="content_generation")
        wait_for(lambda: _started(redis_client, "long"), timeout=30, what="the task to start")

        stopped_at = time.monotonic()
        supervisor.terminate(child.name)  # what scale-in does; housekeeping kills it after the grace period
        wait_for(lambda: not child.running or supervisor.kill_overdue(GRACE), timeout=GRACE + 10,
                 what="the worker to exit")
        assert child.returncode == 0, child.log_path.read_text()[-3000:]  # exited on its own: not killed
        assert time.monotonic() - stopped_at < GRACE
        assert result.get(timeout=10) == "long"
        assert result.state == "SUCCESS"
        assert probe_tasks.done(redis_client) == {"long": 1}
        assert [e["label"] for e in probe_tasks.events(redis_client)] == ["long"]  # started once
    finally:
        supervisor.stop_all(5)


def test_ctrl_c_on_bookgen_up_lets_a_running_task_finish_once_with_success(up_factory: Any) -> None:
    up: Up = up_factory(spec_yaml(content_max=1), args=["--grace", str(int(GRACE))])
    up.wait_ready(2)
    up.send_probes(["long"], TASK_SECONDS)
    wait_for(lambda: _started(up.client, "long"), timeout=30, what="the task to start")
    logs = up.state_dir / "logs"

    stopped_at = time.monotonic()
    assert up.stop(signal.SIGINT, timeout=GRACE + 30) == 130  # the shell convention for Ctrl-C
    assert time.monotonic() - stopped_at < GRACE
    worker_logs = "".join(path.read_text(errors="replace") for path in logs.glob("worker-content-*.log"))
    assert worker_logs.count("Task bookgen.probe.record[") >= 1
    succeeded = [line for line in worker_logs.splitlines() if "succeeded in" in line and "'long'" in line]
    assert len(succeeded) == 1, worker_logs[-3000:]
    assert "WorkerLostError" not in worker_logs
    assert "killed after the grace period" not in up.output()
