"""Examples of the decision core: the reason text, windows, steps, scale to zero, fallbacks."""

from __future__ import annotations

from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Observation
from bookgen_operator.core.autoscaler.policy import Policy

NOW = 1_000_000.0


def obs(pending: int | None = 0, in_flight: int | None = 0, *, current: int = 1, busy: int = 0, concurrency: int = 1,
        age: float | None = None, observed_at: float = NOW, pool: str = "content") -> Observation:
    return Observation(pool, pending, in_flight, age, current, busy, concurrency, observed_at)


def test_a_burst_asks_for_the_full_target_in_one_step_and_says_why() -> None:
    d = decide(obs(57, 4, current=2), Policy(target_per_slot=10), History(), NOW)
    assert (d.desired, d.changed) == (7, True)
    assert d.reason == "content: 2 → 7 (57 pending + 4 in flight, target 10 per slot)"


def test_concurrency_divides_the_work_per_worker() -> None:
    d = decide(obs(100, 0, current=1, concurrency=4), Policy(target_per_slot=5, max_replicas=50), History(), NOW)
    assert d.desired == 5
    assert "4 slots per worker" in d.reason


def test_in_flight_tasks_keep_their_workers() -> None:
    # Nothing pending but 9 running: KEDA's list length would say 0; we keep the workers.
    d = decide(obs(0, 9, current=3), Policy(target_per_slot=3, scale_down_window=0), History(), NOW)
    assert d.desired == 3 and not d.changed


def test_max_step_limits_each_decision() -> None:
    d = decide(obs(100, 0, current=2), Policy(target_per_slot=1, max_replicas=50, max_step=3), History(), NOW)
    assert d.desired == 5 and "max step 3" in d.reason


def test_scale_down_waits_for_the_window_like_the_hpa() -> None:
    policy = Policy(target_per_slot=1, scale_down_window=60, max_replicas=20)
    history = History()
    history.record(NOW - 30, 8, 3600)
    held = decide(obs(2, 0, current=8), policy, history, NOW)
    assert held.desired == 8 and not held.changed and "scale-down window 60 s holds 8" in held.reason
    later = decide(obs(2, 0, current=8, observed_at=NOW + 31), policy, history, NOW + 31)
    assert later.desired == 2


def test_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    policy = Policy(target_per_slot=1, scale_up_window=10, max_replicas=20)
    history = History()
    history.record(NOW - 5, 4, 3600)
    d = decide(obs(10, 0, current=2), policy, history, NOW)
    assert d.desired == 4 and d.recommendation == 10


def test_busy_workers_are_never_scaled_in() -> None:
    d = decide(obs(0, 0, current=5, busy=3), Policy(min_replicas=1, scale_down_window=0), History(), NOW)
    assert d.desired == 3 and "kept 3 busy workers" in d.reason


def test_scale_to_zero_wakes_only_at_the_activation_threshold() -> None:
    policy = Policy(min_replicas=0, activation_threshold=5, target_per_slot=10)
    assert decide(obs(4, 0, current=0), policy, History(), NOW).desired == 0
    woke = decide(obs(5, 0, current=0), policy, History(), NOW)
    assert woke.desired == 1 and woke.changed
    assert decide(obs(0, 0, current=1), Policy(min_replicas=0, scale_down_window=0), History(), NOW).desired == 0


def test_oldest_age_boost_adds_workers_when_tasks_wait_too_long() -> None:
    policy = Policy(target_per_slot=10, target_oldest_age=30, max_replicas=40)
    d = decide(obs(100, 0, current=3, age=45), policy, History(), NOW)
    assert d.desired == 15 and "oldest task waits 45 s > target 30 s" in d.reason  # 10 x 1.5
    capped = decide(obs(100, 0, current=3, age=600), policy, History(), NOW)
    assert capped.desired == 30  # at most three times what demand asks for, however old the task
    assert decide(obs(100, 0, current=3, age=29), policy, History(), NOW).desired == 10


def test_stale_metrics_fall_back_and_missing_ones_hold() -> None:
    policy = Policy(fallback_replicas=4, stale_after=30)
    stale = decide(obs(0, 0, current=2, observed_at=NOW - 31), policy, History(), NOW)
    assert stale.desired == 4 and "stale" in stale.reason
    missing = decide(obs(None, None, current=6), Policy(stale_after=30), History(), NOW)
    assert missing.desired == 6 and not missing.changed and "metrics missing" in missing.reason


def test_nothing_known_changes_nothing_without_a_fallback() -> None:
    d = decide(None, Policy(), History(), NOW, pool="content")
    assert not d.changed
    assert decide(None, Policy(fallback_replicas=3), History(), NOW, pool="content").desired == 3


def test_history_forgets_beyond_the_horizon() -> None:
    history = History()
    for t in range(10):
        history.record(NOW + t, t, 5)
    assert history.within(NOW + 9, 100) == [5, 6, 7, 8, 9]  # 0..4 are past the 5 s horizon
    assert history.within(NOW + 9, 2) == [8, 9]
    assert history.within(NOW + 9, 0) == []


def test_a_recommendation_held_for_minutes_is_one_run_and_windows_see_only_its_recent_part() -> None:
    history = History()
    history.record(NOW, 7, 400)
    for t in range(1, 300):
        history.record(NOW + t, 3, 400)
    assert len(history.recommendations) == 2  # 7 once, then one run of 3: O(changes), not O(polls)
    assert history.within(NOW + 299, 60) == [3]
    assert sorted(history.within(NOW + 299, 300)) == [3, 7]
    history.record(NOW + 300, 5, 400)
    assert sorted(history.within(NOW + 300, 10)) == [3, 5]
