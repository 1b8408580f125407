"""The prefork pool patch: a child whose sentinel fired before it could be reaped is reaped soon after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bookgen_worker.patches.prefork_pool import RETRY_DELAYS, apply, retry_reap


class FakeHub:
    """Runs nothing by itself: the test fires the scheduled calls one by one."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.scheduled.append((delay, callback))

    def fire_next(self) -> float:
        delay, callback = self.scheduled.pop(0)
        callback()
        return delay


class FakePool:
    """A pool whose child becomes reapable only on the `reapable_after`-th maintain_pool call."""

    def __init__(self, proc: Any, reapable_after: int) -> None:
        self._pool = [proc]
        self.calls = 0
        self.reapable_after = reapable_after

    def maintain_pool(self) -> None:
        self.calls += 1
        if self.calls >= self.reapable_after:
            self._pool.clear()


def test_a_child_not_yet_reapable_is_reaped_by_a_retry_within_milliseconds() -> None:
    proc, hub = object(), FakeHub()
    pool = FakePool(proc, reapable_after=3)
    retry_reap(pool, hub, proc)
    waited = 0.0
    while hub.scheduled:
        waited += hub.fire_next()
    assert pool.calls == 3 and pool._pool == []
    assert waited < 0.01  # instead of the pool's 5 s maintenance timer


def test_nothing_is_scheduled_when_the_child_was_already_reaped() -> None:
    proc, hub = object(), FakeHub()
    pool = FakePool(proc, reapable_after=1)
    pool._pool.clear()
    retry_reap(pool, hub, proc)
    assert hub.scheduled == []


def test_the_retries_stop_after_about_a_second_leaving_celerys_own_timer() -> None:
    proc, hub = object(), FakeHub()
    pool = FakePool(proc, reapable_after=10**6)
    retry_reap(pool, hub, proc)
    waited = 0.0
    while hub.scheduled:
        waited += hub.fire_next()
    assert pool.calls == len(RETRY_DELAYS)
    assert 0.5 < waited < 1.5


def test_apply_patches_celerys_pool_once() -> None:
    from celery.concurrency.asynpool import AsynPool

    apply()
    patched = AsynPool._event_process_exit
    apply()
    assert AsynPool._event_process_exit is patched
    assert patched.__module__ == "bookgen_worker.patches.prefork_pool"


def test_the_start_up_heap_is_frozen_once_before_the_first_fork(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc

    from bookgen_worker.patches import prefork_pool as pool_patch

    monkeypatch.setattr(pool_patch, "_frozen", False)
    try:
        pool_patch.freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 0  # Celery's gc.collect() before each fork no longer scans these
        later = [[] for _ in range(10)]  # new tracked objects, alive at the next call
        pool_patch.freeze_startup_heap()  # later forks: nothing more is frozen
        # The frozen count itself may drop (a frozen object can still die by refcount), so the
        # proof is that objects made after the first call are still in the collector's generations.
        still_collected = {id(obj) for obj in gc.get_objects()}
        assert all(id(obj) in still_collected for obj in later)
    finally:
        gc.unfreeze()
