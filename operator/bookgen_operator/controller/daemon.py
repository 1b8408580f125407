"""kopf's daemon per BookGenQueue: runs the pool autoscaler of that queue for as long as it exists.

The autoscaler itself (core/autoscaler, controller/autoscaling.py) is the core; this is glue: it
restarts it when the spec's generation changes, and reports in the queue's Autoscaling condition when
it is turned off in this operator (BOOKGEN_AUTOSCALER) or failed (never a hot restart loop).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from bookgen_operator.controller.autoscaling import run_scheduled
from bookgen_operator.controller.context import OperatorContext, plain
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.status import Condition

log = logging.getLogger(__name__)


async def _pause(stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until `seconds` pass or the daemon is asked to stop. Plain sleeps: kopf cancels async
    daemons on exit, and a cancelled sleep leaves nothing behind (unlike `await stopped.wait(n)`)."""
    deadline = time.monotonic() + seconds
    while not stopped and time.monotonic() < deadline:
        await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


async def autoscaler(body: kopf.Body, stopped: kopf.DaemonStopped, memo: OperatorContext, **_: Any) -> None:
    """Run the pool autoscaler of this queue for as long as the queue exists. kopf keeps `body` live;
    a new generation of the spec restarts the autoscaler with the new pools and policy."""
    ctx = memo
    state = ctx.state(body["metadata"]["uid"])
    while not stopped:
        generation = body["metadata"].get("generation")
        try:
            spec: QueueSpec | None = parse_queue(plain(body))
        except SpecError:
            spec = None  # reconcile reports it
        if spec is None or not spec.autoscaling.enabled or not ctx.config.autoscaler:
            if spec is not None and spec.autoscaling.enabled:
                state.autoscaling = Condition(
                    "Autoscaling", False, "AutoscalerUnavailable",
                    "the autoscaler is not available in this operator; replicas stay as they are")
            while not stopped and body["metadata"].get("generation") == generation:
                await _pause(stopped, 1.0)
            continue
        state.autoscaling = Condition("Autoscaling", True, "Active", "the autoscaler watches the queues of every pool")
        inner = asyncio.Event()
        # One scheduler steps the pools of every queue (bounded concurrency, replicas from the watch).
        task = asyncio.create_task(run_scheduled(spec, ctx.kube, inner, ctx.scheduler, ctx.replicas,
                                                 ctx.redis_executor))
        try:
            while not stopped and body["metadata"].get("generation") == generation and not task.done():
                await _pause(stopped, 1.0)
            ended_by_itself = task.done()
            inner.set()
            await asyncio.wait_for(task, 10)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # the autoscaler failed: say so in status, retry after a pause
            log.warning("autoscaler of %s failed: %s", spec.name, exc)
            state.autoscaling = Condition("Autoscaling", False, "AutoscalerFailed", f"the autoscaler stopped: {exc}")
            ended_by_itself = True
        if ended_by_itself:
            await _pause(stopped, 10.0)  # never a hot restart loop
