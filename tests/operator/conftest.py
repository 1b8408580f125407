"""Fixtures for tests against the Kubernetes API emulator (tests/support/k8s_emulator.py).

`emulator` (async, function scope) yields a running `K8sEmulator` that knows the built-in
resources and the BookGenQueue CRD (`bookgen.io/v1alpha1/bookgenqueues`, with `status`):

- `emulator.base_url`: the API server URL (plain HTTP, no auth) for kopf's login handler or any client;
- `emulator.objects_of("apps/v1/deployments", namespace=None, labels="k=v")`: stored objects (copies);
- `emulator.get_object("v1/pods", "ns", "name")`: one object or None;
- `await emulator.create_object(resource, body)`, `await emulator.patch_object(resource, ns, name,
  patch, subresource="status")`, `await emulator.delete_object(resource, ns, name)`: act as a user or
  a controller would (watch events fire, no API call is logged);
- `emulator.calls`: every API call (`ApiCall(verb, group, resource, subresource, namespace, name, body)`);
  `emulator.writes(since=index)`: the write calls after an index into `calls`;
- `emulator.write_hooks.append(fn(call, body))`: inspect every write; exceptions land in `emulator.hook_errors`.

`kopf_operator` runs the real kopf operator against it, with an OperatorContext of its own built from
a configuration with short intervals (the autoscaler off unless the test is marked `autoscaler`);
every API call made while it runs is collected for operator/api-calls.json (checked by the last test
of test_e2e.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from bookgen_operator.controller.config import OperatorConfig
from bookgen_operator.controller.context import OperatorContext

from tests.support.k8s_emulator import K8sEmulator, default_emulator, start_emulator, stop_emulator

BGQ = "bookgen.io/v1alpha1/bookgenqueues"

#: Calls observed by every emulator of this session (collected for operator/api-calls.json).
OBSERVED_CALLS: set[tuple[str, str, str, str]] = set()


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[K8sEmulator]:
    emu = default_emulator()
    emu.declare(BGQ, kind="BookGenQueue", namespaced=True, subresources=["status"], shortnames=["bgq"])
    emu, server = await start_emulator(emu)
    try:
        yield emu
    finally:
        await stop_emulator(emu, server)


# ---------------------------------------------------------------- the real operator against the emulator




T = TypeVar("T")


async def eventually(condition: Callable[[], T | Awaitable[T]], *, timeout: float = 15.0, what: str = "") -> T:
    """Poll `condition` (sync or async) until truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition!r} (last: {result!r})")
        await asyncio.sleep(0.05)


@dataclass
class RunningOperator:
    emulator: K8sEmulator
    context: OperatorContext
    liveness_url: str

    def reconciles(self, uid: str) -> int:
        return self.context.reconciles[uid]


def _check_status_writes(call: Any, body: Any) -> None:
    """Every status write must survive the CRD's structural schema unpruned."""
    from tests.support.crd_validation import validate_status

    if call.resource == "bookgenqueues" and isinstance(body, dict) and "status" in body:
        problems = validate_status(body["status"])
        if problems:
            raise AssertionError("; ".join(problems))


PROMETHEUS_OPERATOR_MARK = "prometheus_operator"
AUTOSCALER_MARK = "autoscaler"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{PROMETHEUS_OPERATOR_MARK}: the emulator serves the Prometheus Operator's "
                            "ServiceMonitor and PrometheusRule kinds from before the operator starts")
    config.addinivalue_line("markers", f"{AUTOSCALER_MARK}: kopf_operator runs each queue's autoscaler too")


def declare_prometheus_operator(emulator: K8sEmulator) -> None:
    emulator.declare("monitoring.coreos.com/v1/servicemonitors", kind="ServiceMonitor")
    emulator.declare("monitoring.coreos.com/v1/prometheusrules", kind="PrometheusRule")


@pytest.fixture
async def kopf_operator(emulator: K8sEmulator, request: pytest.FixtureRequest) -> AsyncIterator[RunningOperator]:
    """The real kopf operator (our handlers) running cluster-wide against `emulator`.

    With the `prometheus_operator` mark the monitoring kinds exist before kopf starts. Declared later,
    kopf would not watch them: it rescans discovery on CRD events, and the emulator has no CRD objects
    (a real API server has, so there kopf starts watching when the Prometheus Operator is installed).
    Whether kopf's first scan came before a late declaration was a race: 1 run in 10 repaired nothing.

    kopf runs in its own thread and event loop: on exit it cancels every task of its loop that it
    did not start, which would include pytest-asyncio's fixture teardown if it shared the loop.
    """
    import kopf
    from bookgen_operator.controller import handlers

    # Reconcile timers every second; the autoscaler (its own writer of replicas and pool status) is off
    # unless the test asks for it, so reconcile's behaviour (e.g. "no writes") is observed alone.
    config = OperatorConfig(kube_server=emulator.base_url, reconcile_interval=1.0, metrics_port=0,
                            autoscaler=request.node.get_closest_marker(AUTOSCALER_MARK) is not None)
    context = OperatorContext.build(config)
    if request.node.get_closest_marker(PROMETHEUS_OPERATOR_MARK):
        declare_prometheus_operator(emulator)
    emulator.write_hooks.append(_check_status_writes)
    from tests.support.redis_server import free_port

    liveness_url = f"http://127.0.0.1:{free_port()}/healthz"
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(kopf.operator(
                registry=handlers.registry(config), settings=kopf.OperatorSettings(), memo=context,
                standalone=True, clusterwide=True, stop_flag=stop, ready_flag=ready, liveness_endpoint=liveness_url,
            ))
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    await eventually(ready.is_set, timeout=10, what="kopf to start")
    try:
        yield RunningOperator(emulator, context, liveness_url)
    finally:
        stop.set()
        await eventually(lambda: not thread.is_alive(), timeout=20, what="kopf to stop")
        context.scheduler.stop()
        context.redis_executor.shutdown(wait=False)
        for call in emulator.calls:
            OBSERVED_CALLS.add((call.verb, call.group, call.resource, call.subresource or ""))
    assert not failures, "the operator crashed: " + "".join(traceback.format_exception(failures[0]))
    assert not emulator.hook_errors, f"status writes the API server would prune: {emulator.hook_errors}"
