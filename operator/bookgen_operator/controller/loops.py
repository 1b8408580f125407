"""The event loops the operator runs on: uvloop where it is installed (a dependency on Linux), else asyncio's.

kopf's own CLI picks uvloop when it can (`kopf[uvloop]`); we start kopf with `kopf.operator()` from our
own entry point, which does not, so we choose here. With 250 BookGenQueues the operator's two loops
(kopf's, and the autoscaler's scheduler thread) run thousands of callbacks a second, and uvloop runs
them in C: the process needs less of the one core it shares under the GIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # not on this platform: asyncio's loop does the same, a little slower
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    return loop_factory()()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run() on the loop of `loop_factory()`."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
