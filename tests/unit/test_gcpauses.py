"""The operator measures every pause of the cyclic garbage collector, by generation."""

from __future__ import annotations

import gc

from bookgen_operator import gcpauses
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
    thresholds = gc.get_threshold()
    try:
        gcpauses.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == gcpauses.THRESHOLDS
        assert gcpauses.THRESHOLDS[0] > 700 and gcpauses.THRESHOLDS[2] > 10  # CPython's defaults: (700, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
