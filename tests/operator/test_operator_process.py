"""The operator's command line and its own /metrics endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx
from bookgen_operator.controller import opmetrics

from tests.operator.conftest import BGQ, eventually
from tests.support.k8s_emulator import K8sEmulator
from tests.support.redis_server import free_port


def test_help_describes_the_operator() -> None:
    done = subprocess.run([sys.executable, "-m", "bookgen_operator", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "BookGenQueue" in done.stdout and "--namespace" in done.stdout and "--metrics-port" in done.stdout


def test_metrics_endpoint_reports_reconciles_and_durations() -> None:
    with opmetrics.reconcile_timer("test") as outcome:
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


def test_without_credentials_it_explains_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOOKGEN_KUBE_SERVER"}
    done = subprocess.run([sys.executable, "-m", "bookgen_operator"], capture_output=True, text=True, timeout=60,
                          check=False, env={**env, "KUBECONFIG": "/nonexistent/kubeconfig"})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no Kubernetes credentials" in done.stderr


async def test_the_real_process_reconciles_serves_metrics_and_stops_on_sigterm(emulator: K8sEmulator) -> None:
    metrics_port, liveness_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bookgen_operator", "--metrics-port", str(metrics_port),
        "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
        env={**os.environ, "BOOKGEN_KUBE_SERVER": emulator.base_url, "BOOKGEN_AUTOSCALER": "off"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emulator.create_object(BGQ, {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                           "metadata": {"name": "proc", "namespace": "ns"}, "spec": {}})
        await eventually(lambda: emulator.get_object("apps/v1/deployments", "ns", "proc-worker-content"),
                         timeout=30, what="the process to create the workers")

        async def scrape() -> str:
            async with httpx.AsyncClient() as client:
                try:
                    return (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                except httpx.HTTPError:
                    return ""

        text = await eventually(scrape, what="the operator's /metrics")
        assert "bookgen_operator_reconciles_total" in text
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{liveness_port}/healthz")).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
