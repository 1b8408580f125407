"""The operator's command line and its own /metrics endpoint."""

from __future__ import annotations

import subprocess
import sys

import httpx
from bookgen_operator import opmetrics

from tests.support.redis_server import free_port


def test_help_describes_the_operator() -> None:
    done = subprocess.run([sys.executable, "-m", "bookgen_operator", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "BookGenQueue" in done.stdout and "--namespace" in done.stdout and "--metrics-port" in done.stdout


def test_metrics_endpoint_reports_reconciles_and_durations() -> None:
    with opmetrics.reconcile_timer("uid-metrics-test", "test") as outcome:
        outcome["result"] = "ok"
    opmetrics.count_write("patch", "Deployment")
    server, thread = opmetrics.start_server(free_port(), addr="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        thread.join(5)
    assert 'bookgen_operator_reconciles_total{result="ok",trigger="test"} 1.0' in text
    assert "bookgen_operator_reconcile_duration_seconds_bucket" in text
    assert 'bookgen_operator_writes_total{kind="Deployment",verb="patch"}' in text
    assert opmetrics.RECONCILES["uid-metrics-test"] == 1
