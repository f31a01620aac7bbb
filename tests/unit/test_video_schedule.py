"""Rules armed on a schedule in the site's local time, across midnight too."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.rules import CameraZone, RuleKind, ZoneRule, ZoneRules
from services.video.domain.schedule import parse
from services.video.domain.tracker import IouTracker

SEOUL = ZoneInfo("Asia/Seoul")
NIGHTS = parse(["mon", "tue", "wed", "thu", "fri"], "18:00", "06:00")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026: the 7th is a Monday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=SEOUL)


@pytest.mark.parametrize(
    ("moment", "armed"),
    [
        (at(7, 17, 59), False),  # Monday before the evening
        (at(7, 18, 0), True),
        (at(8, 5, 59), True),  # Tuesday morning: Monday night still
        (at(8, 6, 0), False),
        (at(12, 2, 0), True),  # Saturday 02:00: Friday night
        (at(12, 20, 0), False),  # Saturday evening: not a working day
        (at(14, 3, 0), False),  # Monday 03:00: Sunday night, not armed
    ],
)
def test_a_night_schedule_over_midnight(moment: datetime, armed: bool) -> None:
    assert NIGHTS.armed(moment) is armed


def test_a_day_window_and_an_all_day_schedule() -> None:
    shifts = parse(["sat", "sun"], "08:00", "17:30")
    assert shifts.armed(at(12, 8, 0)) and not shifts.armed(at(12, 17, 30)) and not shifts.armed(at(11, 9, 0))
    assert parse(["sun"], "00:00", "00:00").armed(at(13, 23, 59))


def test_an_intruder_already_inside_is_reported_when_the_schedule_arms() -> None:
    rule = ZoneRule(RuleKind.INTRUSION, frozenset({"person"}), schedule=NIGHTS)
    rules = ZoneRules([CameraZone("gate", ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)), (rule,))])
    tracker = IouTracker(min_hits=1)
    inside = Detection(Box(40, 30, 60, 70), 0.9, "person")
    fired = []
    for i, local in enumerate([at(7, 17, 58), at(7, 17, 59), at(7, 18, 0), at(7, 18, 1)]):
        fired += rules.evaluate(tracker.update([inside], float(i)), 100, 100, float(i), local)
    assert [f.time for f in fired] == [2.0]
