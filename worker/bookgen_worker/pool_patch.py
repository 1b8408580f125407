"""A minimal patch of Celery's prefork pool, so a recycled child is replaced at once, not seconds later.

The bug (celery 5.7.0 / billiard 4.3.2, the newest releases; reported in README "Known limits",
close to the open celery/celery#9588 "Sometimes Delays in consumer after a recycled Child Process"):

1. A pool child that reaches max-tasks-per-child (ours: 1000, from the seeds) tells the main
   process, which sends it SIGTERM. The child exits; the kernel closes its files, which makes the
   child's sentinel pipe readable in the main process, and only a moment later (after the rest of
   the exit: sockets closed, memory released, exit of any other thread) turns it into a zombie that
   waitpid can reap.
2. The main process wakes on the sentinel (`AsynPool._event_process_exit`), removes the sentinel
   from its event loop and calls `maintain_pool()` once, whose `waitpid(WNOHANG)` often runs inside
   that moment: the child is not reaped, so no replacement is started, and nothing is watching the
   child any more but the pool's periodic `maintain_pool`, every 5 s.
3. Until then the slot is empty: a one-process worker consumes nothing. Measured with strace: the
   waitpid ran 0.5 ms before the child became reapable; over 1000-task recycles of a one-process
   worker most recycles stalled 1-5 s, which halved `bench.throughput`'s figure. Stock Celery in that
   benchmark never recycles, and its children hold no sockets, so its window is narrower still.

The patch: when the sentinel fired but the child could not be reaped yet, the main process tries
again shortly after (1 ms, doubling, for about a second) from its event loop, until the child is
reaped and replaced; the 5 s timer stays as Celery's own last resort. Nothing else changes: the
same `maintain_pool()` call does the reaping and the replacement, as it would have on the first try.
"""

from __future__ import annotations

from typing import Any

_APPLIED = "_bookgen_patched"

#: Delays (seconds) of the retries after a sentinel fired too early: about 1 s in all.
RETRY_DELAYS: tuple[float, ...] = tuple(0.001 * 2**n for n in range(10))


def retry_reap(pool: Any, hub: Any, proc: Any, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
    """Call `pool.maintain_pool()` after each delay in turn while `proc` is still in the pool."""
    if proc not in pool._pool or not delays:
        return

    def again() -> None:
        if proc not in pool._pool:
            return  # reaped meanwhile (by the periodic timer, or another exit event)
        pool.maintain_pool()
        retry_reap(pool, hub, proc, delays[1:])

    hub.call_later(delays[0], again)


def apply() -> None:
    """Patch celery's AsynPool in this process; idempotent. Only the worker's main process needs it."""
    from celery.concurrency import asynpool

    pool_cls: Any = asynpool.AsynPool
    if getattr(pool_cls, _APPLIED, False):
        return
    original = pool_cls._event_process_exit

    def _event_process_exit(self: Any, hub: Any, proc: Any) -> None:
        original(self, hub, proc)
        retry_reap(self, hub, proc)  # a no-op when the first maintain_pool() reaped it

    pool_cls._event_process_exit = _event_process_exit
    setattr(pool_cls, _APPLIED, True)
