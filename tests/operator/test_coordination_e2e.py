"""Leader election on a coordination.k8s.io Lease: two real operator processes with --leader-elect; one
acts, the other takes over within 15 s of the first one's death (kill -9), and no moment sees writes from
both (issue 13, item 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import httpx

from tests.operator.conftest import BGQ, OBSERVED_CALLS, eventually
from tests.support.k8s_emulator import K8sEmulator
from tests.support.redis_server import free_port

NS = "ns"
LEASE = "coordination.k8s.io/v1/leases"


async def start(emulator: K8sEmulator, name: str) -> tuple[asyncio.subprocess.Process, str]:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bookgen_operator", "--leader-elect", "--lease-namespace", NS,
        "--metrics-port", "0", "--liveness", liveness,
        env={**os.environ, "BOOKGEN_KUBE_SERVER": emulator.base_url, "BOOKGEN_AUTOSCALER": "off",
             "POD_NAME": name, "BOOKGEN_RECONCILE_INTERVAL": "1"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    return process, liveness


def holder(emulator: K8sEmulator) -> str | None:
    lease = emulator.get_object(LEASE, NS, "bookgen-operator")
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def writers(emulator: K8sEmulator, since: int = 0) -> list[tuple[float, str]]:
    """(index, replica) of every write other than the Lease's, by the replica named in the User-Agent."""
    return [(i, "op-a" if "(op-a/" in c.agent else "op-b" if "(op-b/" in c.agent else c.agent)
            for i, c in enumerate(emulator.calls[since:], since)
            if c.is_write and c.resource != "leases" and c.resource != "events" and "bookgen-operator/" in c.agent]


async def healthy(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url, timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False


async def test_one_replica_acts_and_the_standby_takes_over_within_15s(emulator: K8sEmulator) -> None:
    procs: list[asyncio.subprocess.Process] = []
    try:
        a, _ = await start(emulator, "op-a")
        procs.append(a)
        await eventually(lambda: holder(emulator) == "op-a", timeout=30, what="op-a to take the Lease")
        b, b_health = await start(emulator, "op-b")
        procs.append(b)
        await eventually(lambda: healthy(b_health), timeout=30, what="the standby answering its liveness probe")
        await emulator.create_object(BGQ, {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                           "metadata": {"name": "ha", "namespace": NS}, "spec": {}})
        await eventually(lambda: emulator.get_object("apps/v1/deployments", NS, "ha-worker-content"),
                         timeout=30, what="the leader to create the workers")
        assert holder(emulator) == "op-a"
        assert {who for _, who in writers(emulator)} == {"op-a"}, "the standby wrote"

        a.send_signal(signal.SIGKILL)  # the leader dies without releasing anything
        await a.wait()
        died, mark = time.monotonic(), len(emulator.calls)
        await emulator.delete_object("apps/v1/deployments", NS, "ha-worker-content")
        await eventually(lambda: emulator.get_object("apps/v1/deployments", NS, "ha-worker-content"),
                         timeout=15, what="the standby to repair the queue within 15 s of the leader's death")
        took = time.monotonic() - died
        assert holder(emulator) == "op-b"
        assert {who for _, who in writers(emulator, mark)} == {"op-b"}
        print(f"standby acted {took:.1f}s after the leader was killed")

        # A clean stop releases the Lease: the next replica does not wait for it to expire.
        b.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(b.communicate(), 30)
        assert b.returncode == 0, stderr.decode()[-2000:]
        assert holder(emulator) == ""
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for call in emulator.calls:
            OBSERVED_CALLS.add((call.verb, call.group, call.resource, call.subresource or ""))


def test_the_decision_waits_a_full_lease_duration_on_its_own_clock() -> None:
    from bookgen_operator.controller.leader import Observation, may_take

    lease: dict[str, Any] = {"metadata": {"resourceVersion": "1"},
                             "spec": {"holderIdentity": "other", "leaseDurationSeconds": 10, "renewTime": "t1"}}
    seen = Observation()
    assert not may_take(lease, "me", seen, now=100.0)
    assert not may_take(lease, "me", seen, now=109.9)
    assert may_take(lease, "me", seen, now=110.0)  # unchanged for 10 s: the holder is gone
    renewed = {**lease, "spec": {**lease["spec"], "renewTime": "t2"}}
    assert not may_take(renewed, "me", seen, now=111.0)  # a renewal restarts the wait
    assert may_take({**lease, "spec": {**lease["spec"], "holderIdentity": ""}}, "me", seen, now=111.0)
    assert may_take(None, "me", Observation(), now=0.0)
