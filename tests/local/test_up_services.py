"""`bookgen up`'s other parts: beat, Flower behind its generated login, /metrics, an external Redis, port errors."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from tests.local.conftest import BOOKGEN, Up, spec_yaml, start_up
from tests.support.waiting import wait_for


def _with(spec: str, **changes: Any) -> str:
    body = yaml.safe_load(spec)
    body["spec"].update(changes)
    return yaml.safe_dump(body)


def _line(up: Up, prefix: str) -> str:
    found = wait_for(lambda: re.search(rf"^{prefix} (\S+)", up.output(), re.M), timeout=60, what=f"the {prefix} line")
    return found.group(1)


def test_beat_flower_with_its_login_and_metrics_run_beside_the_workers(tmp_path: Path) -> None:
    spec = _with(spec_yaml(), beat={"enabled": True}, flower={"enabled": True})
    up = start_up(tmp_path / "state", spec)
    try:
        up.wait_ready(2)
        auth_file = tmp_path / "state" / "flower-auth"
        assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
        user, _, password = auth_file.read_text().strip().partition(":")
        assert f"user {user}, password {password}" in up.output()  # shown once, on creation

        metrics_url, flower_url = _line(up, "metrics"), _line(up, "flower")
        metrics = wait_for(lambda: _get(metrics_url), timeout=30, what="the metrics endpoint")
        assert 'bookgen_pool_workers_online{pool="content"} 1.0' in metrics.text
        wait_for(lambda: _get(flower_url, auth=None, ok=(401,)), timeout=60, what="Flower to refuse anonymous users")
        assert _get(flower_url, auth=(user, password)) is not None
        # beat sends its schedule (queue statistics every few seconds) to the monitoring worker
        wait_for(lambda: "Sending due task" in (tmp_path / "state" / "logs" / "beat.log").read_text(), timeout=30,
                 what="beat to send a task")
        assert up.stop() == 0
    finally:
        up.stop()
    again = start_up(tmp_path / "state", spec, name="again")
    try:
        again.wait_ready(2)
        assert password not in again.output()  # the login is printed once only
        assert auth_file.read_text().strip() == f"{user}:{password}"
    finally:
        assert again.stop() == 0


def _get(url: str, auth: tuple[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response | None:
    try:
        response = httpx.get(url, auth=auth, timeout=5)
    except httpx.HTTPError:
        return None
    return response if response.status_code in ok else None


def test_an_external_redis_from_the_spec_is_used_and_left_running(tmp_path: Path, redis_server: Any,
                                                                   redis_client: redis.Redis) -> None:
    spec = _with(spec_yaml(), redis={"mode": "external", "url": f"redis://127.0.0.1:{redis_server.port}/0",
                                     "passwordSecretRef": {"name": "external-redis"}})
    up = start_up(tmp_path / "state", spec, extra_env={"REDIS_PASSWORD": redis_server.password})
    try:
        wait_for(lambda: len(redis_client.hkeys("bookgen:workers")) >= 2, timeout=90,
                 what="workers on the external Redis")
        assert not (tmp_path / "state" / "redis-password").exists()  # no private Redis was started
        from bookgen_worker.app import app, configure_app
        from bookgen_worker.config import settings_from_env

        configure_app(app, settings_from_env({"REDIS_URL": redis_server.url()}))
        app.send_task("bookgen.probe.record", args=["external", 0], queue="content_generation")
        wait_for(lambda: redis_client.hget("probe:done", "external") == b"1", timeout=30, what="the task")
    finally:
        assert up.stop() == 0
    assert redis_client.ping()
    assert redis_client.hkeys("bookgen:workers") == []  # every worker unregistered on its warm shutdown


def test_a_taken_redis_port_is_one_line_naming_it_and_nothing_is_left_running(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([BOOKGEN, "up", "--state-dir", str(tmp_path / "s"), "--redis-port", str(port),
                                 "--no-view"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("bookgen: error:")]
    assert errors == [f"bookgen: error: port {port} for Redis is already in use; stop what holds it or choose "
                      "another with --redis-port (0 picks a free one)"]
    assert time.monotonic() - started < 30
    pids = tmp_path / "s" / "pids.json"
    assert not pids.exists() or json.loads(pids.read_text()) == {}


def test_the_exporter_endpoint_can_drive_the_autoscaler_instead_of_redis(tmp_path: Path) -> None:
    body = yaml.safe_load(spec_yaml())
    body["spec"]["autoscaling"]["source"] = "endpoint"
    up = start_up(tmp_path / "state", yaml.safe_dump(body))
    try:
        up.wait_ready(2)
        up.send_probes([f"e{i}" for i in range(60)], 0.5)
        wait_for(lambda: up.workers("content") > 1, timeout=20, what="the pool to grow on the exporter's figures")
    finally:
        assert up.stop() == 0
