"""`bookgen up` end to end with real processes: Redis, celery workers, the autoscaler, signals."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.local.conftest import BOOKGEN, Up, spec_yaml
from tests.support.waiting import wait_for


def _all_done(up: Up, labels: list[str]) -> dict[str, int]:
    done = up.done()
    return done if all(label in done for label in labels) else {}


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_burst_scales_the_pool_out_and_back_in_running_every_task_exactly_once(up_factory: Any) -> None:
    up: Up = up_factory(spec_yaml(content_max=4, scale_down_window=3))
    up.wait_ready(2)
    assert up.workers("content") == 1  # starts at minReplicas

    labels = [f"t{i}" for i in range(200)]
    up.send_probes(labels, 0.5)
    # 200 tasks / (5 per slot * 2 slots) -> 20 workers, clamped to 4; one decision (poll 1 s) away.
    wait_for(lambda: up.workers("content") > 1, timeout=6, what="the content pool to grow")
    wait_for(lambda: up.workers("content") == 4, timeout=10, what="the content pool to reach its maximum")

    done = wait_for(lambda: _all_done(up, labels), timeout=120, interval=0.2, what="all 200 tasks")
    assert set(done.values()) == {1}, "a task completed more than once"
    runs = collections.Counter(e["label"] for e in up.probe_events())
    assert set(runs.values()) == {1}, "a task started more than once (interrupted and redelivered)"
    hosts = {e["hostname"] for e in up.probe_events()}
    assert len(hosts) > 1, "the new workers consumed part of the burst"

    # Idle after the burst: back to minReplicas once the 3 s scale-down window has passed.
    wait_for(lambda: up.workers("content") == 1, timeout=30, what="the content pool to shrink to its minimum")
    events = up.events()
    stops = [e for e in events if e["event"] == "stop"]
    assert len(stops) == 3 and all(e["busy"] == 0 for e in stops)
    # Every stopped worker ended with a clean warm shutdown, none had to be killed.
    wait_for(lambda: len([e for e in up.events() if e["event"] == "exit"]) == 3, timeout=30,
             what="the stopped workers to exit")
    exits = [e for e in up.events() if e["event"] == "exit"]
    assert {e["returncode"] for e in exits} == {0}
    assert not [e for e in up.events() if e["event"] in ("kill", "crash")]
    assert up.workers("monitoring") == 1
    assert up.stop() == 0


def test_a_killed_worker_s_task_is_redelivered_and_completes(up_factory: Any) -> None:
    # Redelivery of a message whose worker died happens after the visibility timeout (kombu's Redis
    # transport restores unacknowledged messages older than it); 5 s here instead of 2 hours, with the
    # restore sweep every second, so the test waits seconds. Time limits must stay below it.
    spec = spec_yaml(content_max=2, scale_down_window=30,
                     worker={"softTimeLimitSeconds": 3, "timeLimitSeconds": 4, "visibilityTimeoutSeconds": 5})
    fast_restore = {"BOOKGEN_UNACKED_RESTORE_INTERVAL": "1", "BOOKGEN_UNACKED_RESTORE_THROTTLE": "1"}
    up: Up = up_factory(spec, extra_env=fast_restore)
    up.wait_ready(2)
    labels = [f"k{i}" for i in range(40)]
    up.send_probes(labels, 0.5)

    def busy_content_worker() -> dict[str, Any] | None:
        return next((w for w in up.registered() if w["pool"] == "content" and w["busy"] > 0), None)

    victim = wait_for(busy_content_worker, timeout=20, what="a content worker running a task")
    running = wait_for(
        lambda: [e["label"] for e in up.probe_events() if e["hostname"] == victim["hostname"]
                 and e["label"] not in up.done()],
        timeout=10, what="a task running on the victim")
    os.killpg(victim["pid"], signal.SIGKILL)  # the whole worker at once, like a pod lost with its node
    killed_at = time.time()

    done = wait_for(lambda: _all_done(up, labels), timeout=90, interval=0.2, what="all 40 tasks, redelivered ones too")
    assert all(count >= 1 for count in done.values())
    for label in running:
        runs = [e for e in up.probe_events() if e["label"] == label]
        # Run again after the kill, by another process (the replacement may reuse the victim's name).
        assert len(runs) >= 2 and runs[-1]["at"] > killed_at and runs[-1]["pid"] != runs[0]["pid"], label
    crashes = [e for e in up.events() if e["event"] == "crash"]
    assert [e["pod"] for e in crashes] == [victim["pod"]]
    assert up.workers("content") >= 1  # the dead worker was replaced
    assert up.stop() == 0


def test_sigterm_stops_every_child_in_the_grace_period_and_queued_tasks_survive(up_factory: Any,
                                                                                tmp_path: Path) -> None:
    spec = spec_yaml(content_max=1)
    up: Up = up_factory(spec, args=["--grace", "15"])
    up.wait_ready(2)
    labels = [f"q{i}" for i in range(30)]
    up.send_probes(labels, 0.5)
    wait_for(lambda: len(up.done()) >= 2, timeout=30, what="the first tasks to finish")
    pids = [w["pid"] for w in up.registered()] + [int(p) for p in _recorded_pids(up).values()]

    started = time.monotonic()
    assert up.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 15 + 5
    assert not [pid for pid in pids if _group_alive(pid)], "a child outlived bookgen up"
    assert "killed after the grace period" not in up.output()
    exits = [e for e in up.events() if e["event"] == "exit"]
    assert exits and {e["returncode"] for e in exits} == {0}

    stopped_at = time.time()

    again: Up = up_factory(spec)
    again.wait_ready(2)
    done = wait_for(lambda: _all_done(again, labels), timeout=60, interval=0.2, what="the queued tasks")
    assert set(done.values()) == {1}, "every task ran exactly once over both runs"
    second_run = {e["label"] for e in again.probe_events() if e["at"] > stopped_at}
    assert second_run, "some tasks were still queued when bookgen up stopped, and ran in the next run"
    assert len(second_run) < len(labels)
    assert again.stop() == 0


def _recorded_pids(up: Up) -> dict[str, int]:
    import json

    return json.loads((up.state_dir / "pids.json").read_text())


def test_invalid_spec_is_one_line_with_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: bookgen.io/v1alpha1\nkind: BookGenQueue\nmetadata: {name: x}\n"
                   "spec:\n  pools: [{name: content, queues: [content_generation], concurrency: 0}]\n")
    result = subprocess.run([BOOKGEN, "up", "-f", str(bad), "--state-dir", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bookgen: error: spec.pools[0].concurrency must be from 1 to 64 (got 0)"]
    assert not (tmp_path / "s" / "redis.conf").exists()  # nothing was started


def test_even_a_sigkilled_bookgen_up_leaves_no_orphans(up_factory: Any) -> None:
    # The kernel sends its children SIGTERM (PR_SET_PDEATHSIG): a warm shutdown, not an orphan.
    up: Up = up_factory(spec_yaml())
    up.wait_ready(2)
    groups = list(_recorded_pids(up).values())
    assert len(groups) == 3  # redis + two workers
    up.process.kill()
    up.process.wait(timeout=10)
    wait_for(lambda: not [pid for pid in groups if _group_alive(pid)], timeout=30, what="every child group to exit")


def test_a_task_running_when_everything_died_at_once_runs_on_the_next_up_without_waiting(up_factory: Any) -> None:
    up: Up = up_factory(spec_yaml(content_max=1))
    up.wait_ready(2)
    up.send_probes(["interrupted"], 5.0)
    wait_for(lambda: [e for e in up.probe_events() if e["label"] == "interrupted"], timeout=30,
             what="the task to start")
    assert up.client.hlen("unacked") == 1  # delivered, not acknowledged (acks late)
    # Power loss: every process dies at once, nothing shuts down warm.
    for pid in _recorded_pids(up).values():
        os.killpg(pid, signal.SIGKILL)
    up.process.kill()
    up.process.wait(timeout=10)

    again: Up = up_factory(spec_yaml(content_max=1), name="again")
    again.wait_ready(2)
    # The visibility timeout is the default 2 hours: only the requeue at start makes this finish now.
    wait_for(lambda: again.done().get("interrupted") == 1, timeout=60, interval=0.2, what="the interrupted task")
    assert "requeued 1 task(s)" in again.output()
    assert again.stop() == 0
