"""Property: replaying the same observations in any redelivery pattern, with timers looked at
whenever, yields the same condition changes as one clean delivery."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alarms.domain.evaluate import Change, ConditionState, Quality, Sample, apply, initial, on_timer
from services.alarms.domain.model import ConditionType, Rule
from tests.unit.test_alarm_evaluate import T0, at, rule

S = timedelta(seconds=1)
RULES: list[Rule] = [
    rule(ConditionType.HIGH, setpoint=10.0, deadband=2.0),
    rule(ConditionType.HIGH, setpoint=10.0, deadband=1.0, on_delay=5 * S, off_delay=7 * S),
    rule(ConditionType.LOW_LOW, setpoint=5.0, deadband=1.0, off_delay=3 * S),
    rule(ConditionType.RATE_OF_RISE, setpoint=10.0, deadband=2.0, on_delay=2 * S),
    rule(ConditionType.STALE, stale_after=15 * S),
    rule(ConditionType.BAD_QUALITY, on_delay=3 * S),
    replace(
        rule(ConditionType.DETECTION, min_confidence=0.5, persistence_count=2),
        persistence_window=10 * S,
        off_delay=4 * S,
    ),
]

samples = st.lists(
    st.tuples(
        st.integers(min_value=-10, max_value=20),  # step from the previous time: late, same, later
        st.sampled_from([None, 0.0, 4.0, 5.5, 8.5, 9.5, 10.0, 12.0, 30.0]),
        st.sampled_from([None, 0.3, 0.5, 0.9]),
        st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]),
    ),
    max_size=40,
).map(
    lambda steps: [
        Sample(f"o{i}", at(sum(step for step, *_ in steps[: i + 1])), value, confidence, quality)
        for i, (_, value, confidence, quality) in enumerate(steps)
    ]
)


def deliver(
    r: Rule, batches: list[list[Sample]], pattern: list[int], look: list[bool]
) -> tuple[list[Change], ConditionState]:
    """Apply the batches in `pattern` order, looking at the timers after a batch where `look` says."""
    state = initial(r, T0)
    changes: list[Change] = []
    for number, index in enumerate(pattern):
        for sample in batches[index]:
            state, made = apply(r, state, sample)
            changes.extend(made)
        if look[number % len(look)] and state.last_at is not None:
            # A timer looked at when the clock shows the latest observation's time.
            state, made = on_timer(r, state, state.last_at)
            changes.extend(made)
    state, made = on_timer(r, state, at(10**6))
    changes.extend(made)
    return changes, state


@settings(max_examples=300, deadline=None)
@given(
    r=st.sampled_from(RULES),
    observations=samples,
    cuts=st.lists(st.integers(min_value=1, max_value=5), max_size=20),
    redeliveries=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0)), max_size=30),
    look=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_any_redelivery_pattern_yields_the_changes_of_one_clean_delivery(
    r: Rule,
    observations: list[Sample],
    cuts: list[int],
    redeliveries: list[tuple[int, int]],
    look: list[bool],
) -> None:
    batches: list[list[Sample]] = []
    rest = observations
    for size in cuts:
        if not rest:
            break
        batches.append(rest[:size])
        rest = rest[size:]
    if rest:
        batches.append(rest)
    if not batches:
        return
    # Each batch first arrives in order; any already delivered batch may come again at any point.
    pattern: list[int] = []
    for index in range(len(batches)):
        pattern.append(index)
        for after, which in redeliveries:
            if after % len(batches) == index:
                pattern.append(which % (index + 1))

    clean, clean_state = deliver(r, batches, list(range(len(batches))), [False])
    replayed, replayed_state = deliver(r, batches, pattern, look)

    assert replayed == clean
    assert (replayed_state.active, replayed_state.due) == (clean_state.active, clean_state.due)
    # The changes of a point alternate and never go back in time.
    assert all(a.active != b.active and a.at <= b.at for a, b in pairwise(clean))
