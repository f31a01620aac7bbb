"""Properties of the engine over random plants' histories (hypothesis)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alarms.adapters.messages import transition_id
from services.alarms.domain.actions import Ack, IllegalAction, Shelve
from services.alarms.domain.evaluate import Quality
from services.alarms.domain.model import AlarmState
from services.alarms.domain.workset import Observation, Workset
from tests.unit.alarm_engine_builders import DETECTORS, PUMP, at, engine, obs, point

DEVICES = (*DETECTORS, PUMP)
VALUES = (1.0, 19.0, 21.0, 30.0, 41.0, 45.0)


@st.composite
def histories(draw: st.DrawFn) -> list[Observation]:
    """Observations in strictly increasing time (one device's messages arrive in order)."""
    count = draw(st.integers(1, 40))
    seconds = 0.0
    out = []
    for i in range(count):
        seconds += draw(st.sampled_from((0.5, 1.0, 3.0, 7.0, 30.0, 90.0)))
        device = draw(st.sampled_from(DEVICES))
        quality = draw(st.sampled_from((Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.BAD)))
        if device == PUMP:
            value = draw(st.sampled_from((1.0, 4.2, 5.0, 9.0)))
            out.append(obs(f"o{i}", seconds, value, device=device, kind="vibration", quality=quality))
        else:
            out.append(obs(f"o{i}", seconds, draw(st.sampled_from(VALUES)), device=device, quality=quality))
    return out


@st.composite
def deliveries(draw: st.DrawFn, history: list[Observation]) -> list[list[Observation]]:
    """The history cut into batches, with batches delivered twice, duplicated inside, and earlier
    batches delivered again later: what JetStream may do after a nak, a crash or an ack timeout."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(history) - 1)), max_size=8)))
    batches = [history[a:b] for a, b in zip([0, *cuts], [*cuts, len(history)], strict=True) if history[a:b]]
    delivered: list[list[Observation]] = []
    for index, batch in enumerate(batches):
        sent = batch + draw(st.lists(st.sampled_from(batch), max_size=3))
        delivered.append(sent)
        if draw(st.booleans()):
            delivered.append(sent)
        if index and draw(st.booleans()):
            delivered.append(draw(st.sampled_from(batches[:index])))
    return delivered


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_redelivery_pattern_yields_the_same_transitions(data: st.DataObject) -> None:
    history = data.draw(histories())
    eng = engine()
    once = Workset()
    eng.observe(once, history)
    eng.tick(once, at(100_000))
    again = Workset()
    for batch in data.draw(deliveries(history)):
        eng.observe(again, batch)
    eng.tick(again, at(100_000))
    assert [transition_id(e.transition) for e in again.emitted] == [
        transition_id(e.transition) for e in once.emitted
    ]
    assert [(e.at, e.began) for e in again.edges] == [(e.at, e.began) for e in once.edges]
    assert _kept(again) == _kept(once)


def _kept(work: Workset) -> dict[object, object]:
    # Everything but the count of late observations ignored, which redelivery raises by design.
    return {k: (v.state, v.condition and v.condition._replace(ignored=0)) for k, v in work.points.items()}


@settings(max_examples=150, deadline=None)
@given(history=histories(), acks=st.lists(st.integers(0, 40), max_size=15))
def test_an_acknowledged_alarm_returns_to_unack_only_with_a_new_activation(
    history: list[Observation], acks: list[int]
) -> None:
    eng, work = engine(), Workset()
    ack_after = set(acks)
    for index, observation in enumerate(history):
        eng.observe(work, [observation])
        if index in ack_after:
            for target in list(work.points):
                with contextlib.suppress(IllegalAction):
                    eng.act(work, target, Ack(observation.at, "kim"))
    eng.tick(work, at(100_000))
    for emitted in work.emitted:
        transition = emitted.transition
        assert transition.old is not AlarmState.ACKED or transition.new is not AlarmState.UNACK
        if transition.new is AlarmState.UNACK:
            assert emitted.facts.activation
            assert transition.observation_ids or transition.timer


@settings(max_examples=150, deadline=None)
@given(
    history=histories(),
    shelve_at=st.integers(0, 40),
    minutes=st.integers(1, 30),
)
def test_a_shelved_alarm_is_not_annunciated_until_its_shelve_expires(
    history: list[Observation], shelve_at: int, minutes: int
) -> None:
    eng, work = engine(), Workset()
    high = point("gd-1", "lel-high")
    until = None
    for index, observation in enumerate(history):
        eng.observe(work, [observation])
        if index == shelve_at and high in work.points and until is None:
            shelve = Shelve(observation.at, "kim", "wash", timedelta(minutes=minutes), timedelta(hours=8))
            eng.act(work, high, shelve)
            until = observation.at + timedelta(minutes=minutes)
    eng.tick(work, at(100_000))
    if until is None:
        return
    shelved = False
    for emitted in work.emitted:
        transition = emitted.transition
        if transition.point != high:
            continue
        if transition.new is AlarmState.SHLVD:
            shelved = True
        elif shelved:
            # The first transition out of the shelve is its expiry, at its due time.
            assert transition.timer == "shelve_expiry" and transition.at == until
            shelved = False
        assert not (shelved and transition.new is AlarmState.UNACK)
