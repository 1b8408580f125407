"""The operator's per-pool replica gauges (the dashboard's "desired vs actual") follow every decision."""

from __future__ import annotations

import asyncio
from typing import Any

from bookgen_operator.controller.status_reporter import status_reporter
from bookgen_operator.core.autoscaler.loop import PoolStatus
from prometheus_client import REGISTRY

from tests.support.queue_stub import QueueStub


class Kube:
    def __init__(self) -> None:
        self.patches: list[Any] = []

    async def patch(self, *args: Any, **kwargs: Any) -> None:
        self.patches.append((args, kwargs))


def gauge(name: str, pool: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"queue_namespace": "books", "queue_service": "novels-metrics",
                                            "pool": pool})


def test_every_decision_sets_desired_and_current_replicas_of_the_pool() -> None:
    report = status_reporter(QueueStub(), Kube())  # type: ignore[arg-type]
    for desired, current in ((4, 2), (1, 4)):
        status = PoolStatus("content", desired, current, "test", True, True, 0, 10, 0, None, 0.1)
        asyncio.run(report(status))  # type: ignore[arg-type]
        assert gauge("bookgen_operator_pool_desired_replicas", "content") == desired
        assert gauge("bookgen_operator_pool_current_replicas", "content") == current
    assert gauge("bookgen_operator_pool_desired_replicas", "export") is None
