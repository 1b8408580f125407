"""kopf's daemon per BookGenQueue: runs the pool autoscaler of that queue for as long as it exists.

The autoscaler itself (core/autoscaler, controller/autoscaling.py) is the core; this is glue: it
restarts it when the spec's generation changes, and reports in the queue's Autoscaling condition when
it is turned off in this operator (BOOKGEN_AUTOSCALER) or failed (never a hot restart loop). It also
follows the pause annotations (core/autoscaler/pause.py): kopf keeps `body` live, annotations change no
generation, so the daemon reads them every tick and the autoscaler asks its PauseSwitch every round; a
pause or resume reconciles at once, so the status says so without waiting for the timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from bookgen_operator.controller.autoscaling import run_scheduled
from bookgen_operator.controller.context import OperatorContext, QueueState, plain
from bookgen_operator.controller.reconciler import reconcile
from bookgen_operator.core.autoscaler.pause import Pause, pause_from
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.status import Condition

log = logging.getLogger(__name__)


TICK = 0.2


async def _pause(stopped: kopf.DaemonStopped, seconds: float,
                 tick: Callable[[], Awaitable[None]] | None = None) -> None:
    """Sleep until `seconds` pass or the daemon is asked to stop, calling `tick` every TICK. Plain sleeps:
    kopf cancels async daemons on exit, and a cancelled sleep leaves nothing behind (unlike
    `await stopped.wait(n)`)."""
    deadline = time.monotonic() + seconds
    while not stopped and time.monotonic() < deadline:
        if tick is not None:
            await tick()
        await asyncio.sleep(min(TICK, max(0.0, deadline - time.monotonic())))


@dataclasses.dataclass
class PauseSwitch:
    """The queue's pause as the daemon last read it from the live body (on kopf's loop); the autoscaler
    asks it every round from the scheduler's thread: one attribute read, no lock needed."""

    value: Pause | None = None

    def __call__(self) -> Pause | None:
        return self.value


def autoscaling_condition(pause: Pause | None) -> Condition:
    if pause is None:
        return Condition("Autoscaling", True, "Active", "the autoscaler watches the queues of every pool")
    return Condition("Autoscaling", False, "Paused", f"{pause.describe()}; remove the annotation to resume scaling")


def pause_follower(ctx: OperatorContext, body: kopf.Body, state: QueueState,
                   switch: PauseSwitch) -> Callable[[], Awaitable[None]]:
    """A tick that reads the pause annotations; on a change it flips the switch and reconciles, so the
    Autoscaling condition (and the printer column reading it) shows the pause within a second."""
    async def follow() -> None:
        pause = pause_from(body["metadata"].get("annotations"))
        if pause == switch.value:
            return
        switch.value = pause
        state.autoscaling = autoscaling_condition(pause)
        log.info("autoscaling of %s: %s", body["metadata"].get("name"), state.autoscaling.message)
        try:
            await reconcile(ctx, body, "pause")
        except Exception as exc:  # the timer writes the status later; scaling already follows the switch
            log.info("reconcile after a pause change of %s: %s", body["metadata"].get("name"), exc)
    return follow


async def autoscaler(body: kopf.Body, stopped: kopf.DaemonStopped, memo: OperatorContext, **_: Any) -> None:
    """Run the pool autoscaler of this queue for as long as the queue exists. kopf keeps `body` live;
    a new generation of the spec restarts the autoscaler with the new pools and policy."""
    ctx = memo
    state = ctx.state(body["metadata"]["uid"])
    switch = PauseSwitch(pause_from(body["metadata"].get("annotations")))
    follow = pause_follower(ctx, body, state, switch)
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
        state.autoscaling = autoscaling_condition(switch.value)
        inner = asyncio.Event()
        # One scheduler steps the pools of every queue (bounded concurrency, replicas from the watch).
        task = asyncio.create_task(run_scheduled(spec, ctx.kube, inner, ctx.scheduler, ctx.replicas,
                                                 ctx.redis_executor, paused=switch))
        try:
            while not stopped and body["metadata"].get("generation") == generation and not task.done():
                await _pause(stopped, 1.0, follow)
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
