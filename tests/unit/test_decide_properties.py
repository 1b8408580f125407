"""Properties of the decision core (acceptance 1), checked by hypothesis over random inputs."""

from __future__ import annotations

from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Observation
from bookgen_operator.core.autoscaler.policy import Policy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

NOW = 1_000_000.0


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    lo = draw(st.integers(0, 10))
    hi = draw(st.integers(max(lo, 1), 40))
    return Policy(
        min_replicas=lo,
        max_replicas=hi,
        target_per_slot=draw(st.floats(0.5, 50, allow_nan=False)),
        target_oldest_age=draw(st.none() | st.floats(1, 600)),
        scale_up_window=draw(st.sampled_from([0.0, 5.0, 30.0])),
        scale_down_window=draw(st.sampled_from([0.0, 3.0, 60.0, 300.0])),
        max_step=draw(st.none() | st.integers(1, 8)),
        activation_threshold=draw(st.integers(1, 20)),
        tolerance=draw(st.floats(0, 0.5)),
        fallback_replicas=draw(st.none() | st.integers(0, 50)),
        stale_after=30.0,
    )


@st.composite
def histories(draw: st.DrawFn) -> History:
    history = History()
    for ago in sorted(draw(st.lists(st.floats(0.5, 400), max_size=8)), reverse=True):
        history.record(NOW - ago, draw(st.integers(0, 40)), 3600)
    return history


def observation(pending: int | None, in_flight: int | None, current: int, busy: int, concurrency: int,
                age: float | None = None, observed_at: float = NOW) -> Observation:
    return Observation("p", pending, in_flight, age, current, busy, concurrency, observed_at)


counts = st.integers(0, 5000)
replicas = st.integers(0, 45)


@settings(max_examples=400, deadline=None)
@given(policies(), histories(), counts, counts, replicas, st.integers(0, 45), st.integers(1, 8),
       st.none() | st.floats(0, 3600), st.floats(0, 120))
def test_result_is_within_bounds_and_never_below_busy(policy: Policy, history: History, pending: int, in_flight: int,
                                                      current: int, busy: int, concurrency: int, age: float | None,
                                                      obs_age: float) -> None:
    busy = min(busy, current)  # a busy worker is one of the current replicas
    d = decide(observation(pending, in_flight, current, busy, concurrency, age, NOW - obs_age), policy, history, NOW)
    assert d.desired >= busy
    assert d.desired >= policy.min_replicas
    assert d.desired <= max(policy.max_replicas, busy)
    assert d.changed == (d.desired != current)


@settings(max_examples=400, deadline=None)
@given(policies(), histories(), counts, counts, counts, replicas, st.integers(0, 45), st.integers(1, 8),
       st.none() | st.floats(0, 3600))
def test_more_demand_never_yields_fewer_replicas(policy: Policy, history: History, pending: int, in_flight: int,
                                                extra: int, current: int, busy: int, concurrency: int,
                                                age: float | None) -> None:
    busy = min(busy, current)
    low = decide(observation(pending, in_flight, current, busy, concurrency, age), policy, history, NOW)
    high = decide(observation(pending + extra, in_flight, current, busy, concurrency, age), policy, history, NOW)
    more_in_flight = decide(observation(pending, in_flight + extra, current, busy, concurrency, age), policy, history,
                            NOW)
    assert high.desired >= low.desired
    assert more_in_flight.desired >= low.desired


@settings(max_examples=400, deadline=None)
@given(policies(), st.integers(1, 40), st.integers(1, 8), st.integers(1, 20), st.data())
def test_inside_the_tolerance_band_nothing_changes(policy: Policy, current: int, concurrency: int, per_slot: int,
                                                   data: st.DataObject) -> None:
    assume(policy.min_replicas <= current <= policy.max_replicas)
    lowest = max(policy.min_replicas, -int(-current * (1 - policy.tolerance) // 1))
    highest = min(policy.max_replicas, int(current * (1 + policy.tolerance)))
    assume(lowest <= highest)
    raw = data.draw(st.integers(lowest, highest), label="raw")
    assume(raw > 0 and abs(raw / current - 1) <= policy.tolerance)
    # Exactly `raw` workers' worth of demand, split between pending and in flight.
    demand = raw * per_slot * concurrency
    pending = data.draw(st.integers(0, demand), label="pending")
    exact = Policy(**{**policy.__dict__, "target_per_slot": float(per_slot), "target_oldest_age": None})
    d = decide(observation(pending, demand - pending, current, 0, concurrency), exact, History(), NOW)
    assert d.desired == current and not d.changed


@settings(max_examples=300, deadline=None)
@given(policies(), histories(), replicas, st.integers(0, 45), st.floats(30.001, 10_000), st.booleans())
def test_stale_or_missing_observations_yield_the_fallback_not_zero(policy: Policy, history: History, current: int,
                                                                  busy: int, staleness: float, missing: bool) -> None:
    busy = min(busy, current)
    obs = (observation(None, None, current, busy, 2) if missing
           else observation(0, 0, current, busy, 2, observed_at=NOW - staleness))
    d = decide(obs, policy, history, NOW)
    if policy.fallback_replicas is not None:
        expected = max(policy.min_replicas, min(policy.max_replicas, policy.fallback_replicas))
        assert d.desired == max(expected, busy)
    else:  # hold (within the bounds): an outage is never read as "no demand"
        assert d.desired == max(policy.min_replicas, min(policy.max_replicas, current), busy)
