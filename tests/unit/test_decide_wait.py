"""The latency target: the pool is sized from the backlog, the measured service time and the target wait."""

from __future__ import annotations

from bookgen_operator.core.autoscaler.decide import decide, wait_slots
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Observation
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.rates import RateWindow, Totals

NOW = 1_000_000.0
POLICY = Policy(min_replicas=0, max_replicas=100, target_wait=60, scale_down_window=0, target_oldest_age=None)


def obs(pending: int, service_time: float | None, *, current: int = 1, busy: int = 0) -> Observation:
    return Observation("content", pending, 0, None, current, busy, 2, NOW, service_time, 0.5)


def test_the_backlog_starts_within_half_the_target_so_the_tail_waits_about_the_target() -> None:
    assert wait_slots(pending=30, service_time=20, target_wait=60) == 20  # 30 tasks x 20 s in 30 s
    d = decide(obs(30, 20.0), POLICY, History(), NOW)
    assert d.desired == 10  # 20 slots / 2 per worker
    assert "tasks take 20 s" in d.reason and "target wait 60 s" in d.reason


def test_longer_tasks_need_proportionally_more_workers_for_the_same_wait() -> None:
    short = decide(obs(60, 5.0), POLICY, History(), NOW).desired
    long = decide(obs(60, 60.0), POLICY, History(), NOW).desired
    assert (short, long) == (5, 60)


def test_without_a_service_time_target_per_slot_sizes_the_pool() -> None:
    d = decide(obs(30, None), Policy(target_per_slot=5, target_wait=60, target_oldest_age=None), History(), NOW)
    assert d.desired == 3 and "target 5 per slot" in d.reason


def test_busy_workers_stay_whatever_the_target_says() -> None:
    assert decide(obs(0, 20.0, current=4, busy=3), POLICY, History(), NOW).desired == 3


def test_rates_come_from_differences_of_the_cumulative_counters_and_survive_a_reset() -> None:
    rates = RateWindow(service_window=300, arrival_window=60)
    assert rates.service_time() is None and rates.arrival_rate() is None
    rates.add(0, Totals(sent=100, finished=90, runtime_sum=900))
    rates.add(60, Totals(sent=130, finished=100, runtime_sum=1150))
    assert rates.service_time() == 25.0  # 250 s over 10 finished
    assert rates.arrival_rate() == 0.5  # 30 sent in 60 s
    rates.add(120, Totals(sent=130, finished=100, runtime_sum=1150))  # nothing new: the last service time holds
    assert rates.service_time() == 25.0 and rates.arrival_rate() == 0.0
    rates.add(180, Totals(sent=1, finished=0, runtime_sum=0))  # Redis flushed: start over, keep the last S
    assert rates.service_time() == 25.0 and rates.arrival_rate() is None
