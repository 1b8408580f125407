"""End to end: the real kopf operator (our handlers) against the Kubernetes API emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.operator.conftest import BGQ, RunningOperator, eventually

NS = "books"
DEPLOY, STS = "apps/v1/deployments", "apps/v1/statefulsets"
API_CALLS_FILE = Path(__file__).resolve().parents[2] / "operator" / "api-calls.json"


def queue(name: str = "demo", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": name, "namespace": NS}, "spec": spec or {}}


def conditions(op: RunningOperator, name: str = "demo") -> dict[str, dict[str, Any]]:
    obj = op.emulator.get_object(BGQ, NS, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def test_missing_external_secret_is_reported_without_a_hot_loop(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    spec = {"redis": {"mode": "external", "url": "redis://redis.example:6379/0",
                      "passwordSecretRef": {"name": "absent", "key": "password"}}}
    created = await emu.create_object(BGQ, queue(spec=spec))
    uid = created["metadata"]["uid"]
    ready = await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert "books/absent" in ready["message"] and "does not exist" in ready["message"]
    first = kopf_operator.reconciles(uid)
    await asyncio.sleep(3)  # a window in which a hot loop would reconcile dozens of times
    assert kopf_operator.reconciles(uid) - first <= 1
    assert not emu.objects_of(DEPLOY, NS), "nothing is rolled out while the Redis password is missing"


async def test_invalid_spec_is_reported_and_not_retried(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    # Passes a lenient client but not our rules: a pool consuming a queue that is not declared.
    spec = {"queues": ["monitoring"], "pools": [{"name": "mon", "queues": ["monitoring", "ghost"]}]}
    created = await emu.create_object(BGQ, queue(spec=spec))
    ready = await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "ghost" in ready["message"]
    first = kopf_operator.reconciles(created["metadata"]["uid"])
    await asyncio.sleep(2.5)
    assert kopf_operator.reconciles(created["metadata"]["uid"]) == first
