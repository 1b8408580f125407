"""Pausing a queue's autoscaling by annotation (core/autoscaler/pause.py and the loop's use of it)."""

from __future__ import annotations

import pytest
from bookgen_operator.controller.daemon import PauseSwitch, autoscaling_condition
from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus
from bookgen_operator.core.autoscaler.pause import PAUSED, PAUSED_REPLICAS, Pause, hold, pause_from

from tests.unit.test_decide_loop import NOW, FakePlatform, FakeSource, Pool, metrics


@pytest.mark.parametrize(("annotations", "expected"), [
    (None, None),
    ({}, None),
    ({"other": "true"}, None),
    ({PAUSED: "true"}, Pause()),
    ({PAUSED: " True "}, Pause()),
    ({PAUSED: "false"}, None),
    ({PAUSED_REPLICAS: "2"}, Pause(2)),
    ({PAUSED_REPLICAS: "0", PAUSED: "true"}, Pause(0)),
    # paused: "false" wins, as with KEDA: a user lifting a pause need not remove both annotations.
    ({PAUSED_REPLICAS: "3", PAUSED: "false"}, None),
])
def test_the_annotations_say_whether_and_how_a_queue_is_paused(annotations: dict[str, str] | None,
                                                                expected: Pause | None) -> None:
    assert pause_from(annotations) == expected


@pytest.mark.parametrize(("annotations", "words"), [
    ({PAUSED: "yes please"}, "should be true or false, got 'yes please': paused all the same"),
    ({PAUSED_REPLICAS: "two"}, "must be a whole number from 0 to 1000, got 'two'"),
    ({PAUSED_REPLICAS: "-1"}, "got '-1'"),
    ({PAUSED_REPLICAS: "5000"}, "got '5000'"),
])
def test_a_value_not_understood_still_pauses_at_the_current_replicas_and_says_why(
        annotations: dict[str, str], words: str) -> None:
    pause = pause_from(annotations)
    assert pause is not None and pause.replicas is None
    assert words in pause.describe()


def test_a_pause_never_goes_below_the_busy_workers() -> None:
    assert hold(Pause(), current=5, busy=2) == 5
    assert hold(Pause(1), current=5, busy=0) == 1
    assert hold(Pause(1), current=5, busy=3) == 3
    assert hold(Pause(6), current=2, busy=1) == 6


async def test_a_paused_pool_under_a_backlog_is_not_scaled_and_says_so() -> None:
    reports: list[PoolStatus] = []
    switch = PauseSwitch(Pause())
    platform = FakePlatform({"a": 2})
    scaler = Autoscaler([Pool("a")], FakeSource({"a": metrics(500)}), platform, clock=lambda: NOW,
                        on_decision=reports.append, paused=switch)
    for _ in range(3):
        await scaler.step()
    assert platform.scaled == []
    assert reports[-1].desired == 2 and not reports[-1].changed
    assert "paused at the current replicas by the annotation bookgen.io/paused" in reports[-1].reason
    assert reports[-1].pending == 500  # the backlog is still shown while paused
    switch.value = None  # the annotation is removed: the very next round scales
    await scaler.step()
    assert platform.scaled == [("a", 20, [])]


async def test_paused_replicas_moves_the_pool_once_and_keeps_its_busy_workers() -> None:
    platform = FakePlatform({"a": 5}, busy={"a": ["w1", "w2", "w3"]})
    reports: list[PoolStatus] = []
    scaler = Autoscaler([Pool("a")], FakeSource({"a": metrics(0, 3)}), platform, clock=lambda: NOW,
                        on_decision=reports.append, paused=PauseSwitch(Pause(1)))
    await scaler.step()
    await scaler.step()
    assert platform.scaled == [("a", 3, ["w1", "w2", "w3"])]  # once; the busy pods are named, so they stay
    assert reports[-1].reason.endswith("3 replicas (3 busy workers kept)")


def test_the_condition_says_paused_and_how_to_resume() -> None:
    active = autoscaling_condition(None)
    assert (active.status, active.reason) == (True, "Active")
    paused = autoscaling_condition(Pause(2))
    assert (paused.status, paused.reason) == (False, "Paused")
    assert paused.message == ("paused at 2 replicas by the annotation bookgen.io/paused-replicas; "
                              "remove the annotation to resume scaling")
