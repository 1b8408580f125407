"""The operator measures every pause of the cyclic garbage collector, by generation."""

from __future__ import annotations

import gc

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


def test_settle_freezes_what_is_alive_and_collects_less_often() -> None:
    try:
        gcpauses.settle()
        gcpauses.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == gcpauses.THRESHOLDS
        assert gcpauses.THRESHOLDS[0] > 700 and gcpauses.THRESHOLDS[2] > 10  # CPython's defaults: (700, 10, 10)
        assert gc.callbacks.count(gcpauses._freeze_survivors) == 1
    finally:
        gcpauses.unsettle()
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def test_after_settling_a_full_collection_freezes_its_survivors_so_the_next_walks_only_newcomers() -> None:
    try:
        gcpauses.settle()
        frozen = gc.get_freeze_count()
        survivors = [Node() for _ in range(1000)]  # alive across the collection: long-lived
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(survivors)
        walked = {id(o) for o in gc.get_objects(generation=2)}
        assert not walked & {id(s) for s in survivors}, "the next full collection does not walk them again"
        # Cyclic garbage made after the freeze is still collected.
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        gcpauses.unsettle()
