"""Alarm transitions read as fusion signals: only activations and returns, with the device's place
and kind from the demo site and alarm rule files; a voting group's alarm at its first member."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from services.alarms.adapters.messages import AlarmView
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    PointId,
    Priority,
    Rationale,
    Text,
    Transition,
)
from services.alarms.domain.rules import RuleSet
from services.alarms.rule_loader import load_rule_set
from services.common.sites.registry import SiteRegistry
from services.incidents.adapters.signals import AlarmMessage, SignalReader
from services.incidents.read_json import language
from tests.conftest import DEMO_SITES, REPO

AT = datetime(2026, 11, 22, 0, 15, 3, tzinfo=UTC)
ACTION = Text(ko="호흡보호구 착용", en="Wear breathing apparatus")


@functools.cache
def registry() -> SiteRegistry:
    return SiteRegistry.load([DEMO_SITES])


@functools.cache
def rules() -> RuleSet:
    return load_rule_set([REPO / "sites" / "alarms" / "ulsan-demo.yaml"], registry())


def message(device: str, rule: str, old: AlarmState, new: AlarmState, *, active: bool) -> AlarmMessage:
    point = PointId("ulsan-refining", "ulsan-refinery", device, rule)
    transition = Transition(point=point, old=old, new=new, at=AT, active=active)
    alarm = AlarmView(
        point=point,
        condition=ConditionType.HIGH_HIGH,
        priority=Priority.EMERGENCY,
        alarm_class=AlarmClass.SAFETY,
        rationale=Rationale(cause=ACTION, consequence=ACTION, action=ACTION, time_to_respond=timedelta(60)),
        state=new,
        active=active,
    )
    return AlarmMessage("01M809PETRFDNWWH3JS41D05Z3", transition=transition, alarm=alarm)


READER = SignalReader(registry, rules)


def test_an_activation_carries_the_devices_zone_position_and_kind() -> None:
    signal = READER.signal(
        message("gd-fcc2-203", "h2s-high-high", AlarmState.NORM, AlarmState.UNACK, active=True)
    )
    assert signal is not None and signal.active
    assert (signal.kind, signal.zone) == ("gas.h2s", "fcc-2")
    assert signal.position == pytest.approx((35.47782, 129.35544))
    assert signal.action is not None and signal.action.en == "Wear breathing apparatus"
    assert not signal.confirmed


@pytest.mark.parametrize(
    ("old", "new", "active", "expected"),
    [
        (AlarmState.UNACK, AlarmState.RTNUN, False, False),  # returned, not yet seen
        (AlarmState.ACKED, AlarmState.NORM, False, False),  # returned after the ack
        (AlarmState.RTNUN, AlarmState.UNACK, True, True),  # active again
        (AlarmState.UNACK, AlarmState.ACKED, True, None),  # a person's ack: not fusion's business
        (AlarmState.RTNUN, AlarmState.NORM, False, None),  # ack of a return: nothing changed
        (AlarmState.UNACK, AlarmState.SHLVD, True, None),  # shelved: hidden, the gas still there
        (AlarmState.ACKED, AlarmState.OOSRV, False, False),  # out of service once it cleared
    ],
)
def test_only_activations_and_returns_become_signals(
    old: AlarmState, new: AlarmState, active: bool, expected: bool | None
) -> None:
    signal = READER.signal(message("gd-fcc2-203", "h2s-high", old, new, active=active))
    assert (signal.active if signal is not None else None) == expected


def test_a_voting_groups_alarm_stands_at_its_first_member_and_is_confirmed() -> None:
    signal = READER.signal(message("t501-fire-2oo3", "vote", AlarmState.NORM, AlarmState.UNACK, active=True))
    assert signal is not None
    assert signal.confirmed
    assert (signal.kind, signal.zone) == ("flame", "tank-farm")
    assert signal.alarm_id == "t501-fire-2oo3--vote"


def test_a_rule_removed_since_leaves_the_kind_unknown_not_a_crash() -> None:
    signal = READER.signal(
        message("gd-fcc2-203", "no-such-rule", AlarmState.NORM, AlarmState.UNACK, active=True)
    )
    assert signal is not None and signal.kind is None and signal.zone == "fcc-2"


@pytest.mark.parametrize(
    ("accept", "timezone", "expected"),
    [
        (None, "Asia/Seoul", "ko"),
        (None, "Europe/Berlin", "en"),
        ("en-US,en;q=0.9", "Asia/Seoul", "en"),
        ("ko-KR", "Europe/Berlin", "ko"),
        ("en;q=0.3, ko;q=0.8", None, "ko"),
        ("fr-FR", "Asia/Seoul", "ko"),  # neither offered: the site's
        ("ko;q=0, en", "Asia/Seoul", "en"),
        ("ko;q=abc", None, "en"),
    ],
)
def test_the_language_is_the_callers_first_of_korean_and_english_else_the_sites(
    accept: str | None, timezone: str | None, expected: str
) -> None:
    assert language(accept, timezone) == expected
