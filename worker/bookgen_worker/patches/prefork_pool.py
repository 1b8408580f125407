"""A minimal patch of Celery's prefork pool, so a recycled child is replaced at once, not seconds later.

Written for celery 5.7.0 and billiard 4.3.2 (WRITTEN_FOR; on other versions it is not applied, and says
so). Reported in docs/upstream/celery-prefork-recycle.md, close to the open celery/celery#9588
("Sometimes Delays in consumer after a recycled Child Process"); tests/unit/test_patch_fingerprints.py
checks that the functions listed in UPSTREAM are still the code this was written against.

The bug (celery 5.7.0 / billiard 4.3.2, the newest releases when found):

1. A pool child that reaches max-tasks-per-child (ours: 1000, BookGen's original figure) tells the main
   process, which sends it SIGTERM. The child exits; the kernel closes its files, which makes the
   child's sentinel pipe readable in the main process, and only a moment later turns it into a
   zombie that waitpid can reap.
2. The main process wakes on the sentinel (`AsynPool._event_process_exit`), removes the sentinel
   from its event loop and calls `maintain_pool()` once, whose `waitpid(WNOHANG)` often runs inside
   that moment: the child is not reaped, so no replacement is started, and nothing is watching the
   child any more but the pool's periodic `maintain_pool`, every 5 s.
3. Until then the slot is empty: a one-process worker consumes nothing. Measured with strace: the
   waitpid ran 0.5 ms before the child became reapable; over 1000-task recycles of a one-process
   worker most recycles stalled 1-5 s, which halved `bench.throughput`'s figure. Stock Celery in that
   benchmark never recycles (and its children, which hold no Redis socket and no thread, met the race
   at none of the 4 recycles we watched with max-tasks-per-child set).

Second, smaller cost of the same recycle: before it exits, the child waits until the main process
has read its last result, checking every 0.1 s (billiard's GUARANTEE_MESSAGE_CONSUMPTION_RETRY_*):
the main process needs well under a millisecond, but the first check comes too soon, so each
recycle also idled the slot for 0.1-0.2 s (the gaps between children were 0.1 s or 0.2 s). The
patch checks every 2 ms instead, over the same 30 s budget.

Third: Celery runs `gc.collect()` in the main process before every fork (celery#2927), which scans
the whole start-up heap (every module, class and function of Celery, kombu and BookGen) each time:
60 ms of a recycle's 110 ms, under strace. The patch freezes that heap once, before the first child
is forked (`gc.freeze()`, the standard library's own advice for pre-fork servers): later collections
scan only what was allocated since. What is frozen is what start-up built (modules, classes,
functions, the app), which lives as long as the process; a frozen object that later became cyclic
garbage would not be collected, which for start-up objects of a worker is not a real cost.

The patch: when the sentinel fired but the child could not be reaped yet, the main process tries
again shortly after (1 ms, doubling, for about a second) from its event loop, until the child is
reaped and replaced; the 5 s timer stays as Celery's own last resort. Nothing else changes: the
same `maintain_pool()` call does the reaping and the replacement, as it would have on the first try.
"""

from __future__ import annotations

import gc
from types import MappingProxyType
from typing import Any

from celery import signals

from bookgen_worker.patches import written_for

#: The distributions and versions this patch was written for.
WRITTEN_FOR = MappingProxyType({"celery": "5.7.0", "billiard": "4.3.2"})
#: The upstream functions wrapped (_event_process_exit) or relied upon (the child's wait for its last
#: result to be read, whose constants we shorten; maintain_pool, which reaps and replaces): SHA-256 of
#: their source in those versions (tests/unit/test_patch_fingerprints.py recomputes them).
UPSTREAM = MappingProxyType({
    "celery.concurrency.asynpool:AsynPool._event_process_exit":
        "9d269d8773b32ad1670ca3a9dde2494543c4ee7fe026dc7e594d44bcb5f73b6f",
    "billiard.pool:Worker._ensure_messages_consumed":
        "3444a513e31cfaa37730b314c8e75788ce7ebe9979ebde0c2063f1a2b3c11525",
    "billiard.pool:Pool.maintain_pool": "3e21e07b1dad1e490d88207cb39663e6d1925d876cd35350fc2970b9f3da4bf6",
})

_APPLIED = "_bookgen_patched"

#: How often a child about to exit checks that its last result was read, and for how many checks:
#: billiard's 300 x 0.1 s budget, in steps a no-op task's round trip does not round up to 0.1 s.
CONSUMED_CHECK_INTERVAL = 0.002
CONSUMED_CHECK_LIMIT = 15_000

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


def freeze_startup_heap(**_: Any) -> None:
    """Before the first child is forked (Celery's worker_before_create_process): freeze the start-up
    heap once, so Celery's gc.collect() before each fork scans only what came after it."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()  # what start-up left as garbage is freed, not frozen
        gc.freeze()


_frozen = False


def apply() -> bool:
    """Patch celery's AsynPool in this process; idempotent. Only the worker's main process needs it.
    False (and a loud warning) when celery or billiard is not the version this was written for."""
    from billiard import pool as billiard_pool
    from celery.concurrency import asynpool

    if not written_for("Celery prefork pool", WRITTEN_FOR,
                       "a recycled pool child is replaced up to 5 s late and its slot idles meanwhile "
                       "(docs/upstream/celery-prefork-recycle.md)"):
        return False

    # Read by the child at exit (Worker._ensure_messages_consumed); children inherit them by fork.
    billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL = CONSUMED_CHECK_INTERVAL
    billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT = CONSUMED_CHECK_LIMIT
    pool_cls: Any = asynpool.AsynPool
    if getattr(pool_cls, _APPLIED, False):
        return True
    original = pool_cls._event_process_exit

    def _event_process_exit(self: Any, hub: Any, proc: Any) -> None:
        original(self, hub, proc)
        retry_reap(self, hub, proc)  # a no-op when the first maintain_pool() reaped it

    pool_cls._event_process_exit = _event_process_exit
    signals.worker_before_create_process.connect(freeze_startup_heap, weak=False, dispatch_uid="bookgen-gc-freeze")
    setattr(pool_cls, _APPLIED, True)
    return True
