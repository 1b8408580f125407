"""The operator measures every pause of the cyclic garbage collector, by generation."""

from __future__ import annotations

import gc
import weakref

from bookgen_operator.controller import gcpauses
from prometheus_client import REGISTRY


def pauses(generation: str) -> float:
    value = REGISTRY.get_sample_value("bookgen_operator_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_a_full_collection_is_observed_once_and_measuring_twice_does_not_double_it() -> None:
    gcpauses.measure()
    gcpauses.measure()
    before = pauses("2")
    gc.collect()
    assert pauses("2") == before + 1
    assert REGISTRY.get_sample_value("bookgen_operator_gc_pause_seconds_sum", {"generation": "2"}) > 0


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def test_settle_freezes_the_start_up_heap_once_and_collects_less_often() -> None:
    try:
        gcpauses.settle()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        later = [Node() for _ in range(1000)]  # made after start-up
        gcpauses.settle()  # a second call (another operator run in this process) freezes nothing more
        # (frozen objects can still be freed by reference counting: the count may only shrink)
        assert gc.get_freeze_count() <= frozen
        assert gc.get_threshold() == gcpauses.THRESHOLDS
        assert gcpauses.THRESHOLDS[0] > 700 and gcpauses.THRESHOLDS[2] > 10  # CPython's defaults: (700, 10, 10)
        del later
    finally:
        gcpauses.unsettle()
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_after_settling_survivors_of_full_collections_are_not_frozen_and_their_cycles_are_freed() -> None:
    try:
        gcpauses.settle()
        frozen = gc.get_freeze_count()
        a, b = Node(), Node()
        a.peer, b.peer = b, a  # a cycle that lives through full collections, as kopf's bodies and tasks do
        alive = weakref.ref(a)
        gc.collect()
        gc.collect()
        assert gc.get_freeze_count() <= frozen, "no survivor of a full collection is frozen after start-up"
        assert id(a) in {id(o) for o in gc.get_objects(generation=2)}, "the next full collection walks it"
        del a, b  # now garbage: only the collector can free a cycle
        gc.collect()
        assert alive() is None, "cyclic garbage among long-lived objects is freed"
    finally:
        gcpauses.unsettle()
