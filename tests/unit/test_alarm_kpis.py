"""The ISA-18.2 figures of a window, on a scripted day whose figures are worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.alarms.domain.kpis import (
    Activation,
    Flood,
    KpiWindow,
    PointAtEnd,
    Status,
    compute,
)
from services.alarms.domain.model import Priority

SEOUL = ZoneInfo("Asia/Seoul")
DAY_START = datetime(2026, 11, 22, tzinfo=SEOUL)
DAY_END = DAY_START + timedelta(days=1)


def at(hh: int, mm: int = 0, ss: int = 0, *, day: int = 22) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=SEOUL)


def scripted_activations() -> list[Activation]:
    """The scripted day, in the site's local time (Asia/Seoul):

    - a burst at 08:00: p-01 .. p-12 once each, 30 s apart (08:00:00 .. 08:05:30); p-01..p-06
      medium, p-07..p-11 high, p-12 emergency;
    - a chattering pump: vt-p101a (low) 8 times, 40 s apart from 14:00:00 (.. 14:04:40);
    - a temperature alarm at half past every hour from 00:30 to 09:30: ti-201 (low), 10 times;
    - gd-9 (high) at 00:00:00 sharp, the window's first instant (counted);
    - outside the window: one at 23:50 the day before, one at 00:00 the day after (the end is
      excluded).
    """
    acts = [
        Activation(
            f"p-{i + 1:02d}",
            Priority.MEDIUM if i < 6 else Priority.HIGH if i < 11 else Priority.EMERGENCY,
            at(8) + timedelta(seconds=30 * i),
        )
        for i in range(12)
    ]
    acts += [
        Activation("vt-p101a--vibration-high", Priority.LOW, at(14) + timedelta(seconds=40 * i))
        for i in range(8)
    ]
    acts += [Activation("ti-201--temperature-high", Priority.LOW, at(hh, 30)) for hh in range(10)]
    acts += [Activation("gd-9--h2s-high", Priority.HIGH, DAY_START)]
    acts += [
        Activation("gd-9--h2s-high", Priority.HIGH, at(23, 50, day=21)),
        Activation("gd-9--h2s-high", Priority.HIGH, DAY_END),
    ]
    return acts


FLOODS = [
    Flood(at(23, 40, day=21), at(0, 3)),  # began the day before: 3 min inside
    Flood(at(8, 5), at(8, 18)),  # 13 min
    Flood(at(23, 54), None),  # still going: 6 min to the window's end
]
POINTS = [
    PointAtEnd("ti-201--temperature-high", "ACKED", at(9, 30)),  # 14.5 h: not stale
    PointAtEnd("gd-old--co-high", "UNACK", at(12, day=20)),  # 2.5 days: stale
    PointAtEnd("vt-old--vibration-high", "ACKED", at(23, 59, 59, day=21)),  # 24 h 1 s: stale
    PointAtEnd("x-exact--lel-high", "ACKED", DAY_END - timedelta(hours=24)),  # exactly 24 h: not "more than"
    PointAtEnd("gd-sh--h2s-high", "SHLVD", at(0, day=10)),  # shelved: counted as shelved, not stale
    PointAtEnd("gd-s1--lel-high", "DSUPR", None),
    PointAtEnd("gd-s2--lel-high", "DSUPR", None),
    PointAtEnd("gd-o1--lel-high", "OOSRV", None),
    PointAtEnd("gd-n--lel-high", "NORM", None),
]


def window(start: datetime = DAY_START, end: datetime = DAY_END) -> KpiWindow:
    return KpiWindow(
        start=start,
        end=end,
        activations=scripted_activations(),
        floods=FLOODS,
        chattering=frozenset({"vt-p101a--vibration-high"}),
        fleeting=frozenset({"p-03", "p-04"}),
        points=POINTS,
        zone=SEOUL,
    )


def test_the_scripted_day_gives_the_hand_computed_figures() -> None:
    kpis = compute(window())

    # 12 (burst) + 8 (pump) + 10 (temperature) + 1 (gd-9 at the first instant) = 31.
    assert kpis.activations == 31
    # One local day: 31 a day, all on 22 November (Seoul); under 150: acceptable.
    assert (kpis.per_day.average, kpis.per_day.peak, kpis.per_day.status) == (31, 31, Status.ACCEPTABLE)
    # 31 / 24 = 1.2917; the busiest hour is 08: the burst's 12 and ti-201 at 08:30 = 13.
    assert (kpis.per_hour.average, kpis.per_hour.peak) == (1.292, 13)
    assert kpis.per_hour.status is Status.ACCEPTABLE
    # 31 / 144 = 0.2153; the busiest 10 minutes are 08:00-08:10 with the burst's 12, over the
    # EEMUA 191 ceiling of 10.
    assert (kpis.per_10_minutes.average, kpis.per_10_minutes.peak) == (0.215, 12)
    assert kpis.per_10_minutes.status is Status.ACCEPTABLE
    assert kpis.per_10_minutes.peak_status is Status.OVER
    # One of the day's 144 intervals holds more than 10: 1 / 144 = 0.694 %, under ~1 %.
    assert kpis.intervals_above_10_pct.value == 0.694
    assert kpis.intervals_above_10_pct.status is Status.ACCEPTABLE
    # In flood 3 + 13 + 6 = 22 min of 1,440: 1.528 %, over ~1 %.
    assert kpis.flood_time_pct.value == 1.528
    assert kpis.flood_time_pct.status is Status.OVER
    # Most frequent: ti-201 10, vt-p101a 8, then the ones with 1 by id: gd-9, p-01 .. p-07.
    assert [(f.alarm_id, f.activations) for f in kpis.top10] == [
        ("ti-201--temperature-high", 10),
        ("vt-p101a--vibration-high", 8),
        ("gd-9--h2s-high", 1),
        *((f"p-0{i}", 1) for i in range(1, 8)),
    ]
    # 10 / 31 = 32.258 %; the ten together (10 + 8 + 8) / 31 = 83.871 %: far over 5 %.
    assert kpis.top10[0].share_pct == 32.258
    assert kpis.top10_share_pct.value == 83.871
    assert kpis.top10_share_pct.status is Status.OVER
    assert (kpis.chattering.value, kpis.chattering.status) == (1, Status.OVER)
    assert (kpis.fleeting.value, kpis.fleeting.status) == (2, Status.OVER)
    # gd-old and vt-old: 2, fewer than 5.
    assert (kpis.stale.value, kpis.stale.status) == (2, Status.ACCEPTABLE)
    # low 8 + 10 = 18 (58.065 %), medium 6 (19.355 %), high 5 + 1 = 6 (19.355 %), emergency
    # 1 (3.226 %).
    assert [(p.priority, p.activations, p.share_pct, p.target_pct) for p in kpis.priorities] == [
        (Priority.LOW, 18, 58.065, 80.0),
        (Priority.MEDIUM, 6, 19.355, 15.0),
        (Priority.HIGH, 6, 19.355, 5.0),
        (Priority.EMERGENCY, 1, 3.226, 1.0),
    ]
    assert (kpis.shelved, kpis.suppressed, kpis.out_of_service) == (1, 2, 1)


def test_a_part_of_a_day_is_scaled_to_a_day_and_peaks_count_only_what_is_inside() -> None:
    # 06:00-12:00: the burst's 12 and ti-201 at 06:30, 07:30, 08:30, 09:30: 16.
    kpis = compute(window(at(6), at(12)))

    assert kpis.activations == 16
    # 16 in 6 hours runs at 16 * 24 / 6 = 64 a day; the day's peak counts only the 16 inside.
    assert (kpis.per_day.average, kpis.per_day.peak) == (64, 16)
    # 16 / 6 = 2.667 an hour, under the acceptable 6.
    assert (kpis.per_hour.average, kpis.per_hour.status) == (2.667, Status.ACCEPTABLE)
    # 16 / 36 = 0.444 per 10 minutes; 1 of 36 intervals above 10 = 2.778 %.
    assert kpis.per_10_minutes.average == 0.444
    assert kpis.intervals_above_10_pct.value == 2.778
    assert kpis.intervals_above_10_pct.status is Status.OVER
    # The 08:05-08:18 flood, 13 of 360 minutes: 3.611 %.
    assert kpis.flood_time_pct.value == 3.611


def test_a_window_off_the_clock_counts_the_intervals_it_cuts() -> None:
    # 08:05-08:25 cuts 08:00-08:10 and overlaps 08:10-08:20 and 08:20-08:30: 3 intervals. Inside:
    # p-11 (08:05:00) and p-12 (08:05:30).
    kpis = compute(window(at(8, 5), at(8, 25)))

    assert kpis.activations == 2
    assert kpis.per_10_minutes.peak == 2
    # 2 in 20 minutes: 1 per 10 minutes, 6 an hour, 144 a day: all exactly at "acceptable".
    assert (kpis.per_10_minutes.average, kpis.per_hour.average, kpis.per_day.average) == (1, 6, 144)
    assert kpis.per_hour.status is Status.ACCEPTABLE
    assert kpis.intervals_above_10_pct.value == 0
    # In flood from 08:05 to 08:18: 13 of 20 minutes.
    assert kpis.flood_time_pct.value == 65


def test_a_quiet_window_has_zero_figures_and_no_division_by_zero() -> None:
    kpis = compute(KpiWindow(DAY_START, DAY_END, (), (), frozenset(), frozenset(), ()))

    assert kpis.activations == 0
    assert (kpis.per_day.peak, kpis.per_10_minutes.peak) == (0, 0)
    assert kpis.top10 == () and kpis.top10_share_pct.value == 0
    assert all(p.share_pct == 0 for p in kpis.priorities)
    assert kpis.per_day.status is Status.ACCEPTABLE


def test_a_rate_between_acceptable_and_maximum_is_manageable() -> None:
    # 200 activations in one day: over 150, within 300.
    acts = [Activation(f"a-{i}", Priority.LOW, DAY_START + timedelta(minutes=7 * i)) for i in range(200)]
    kpis = compute(KpiWindow(DAY_START, DAY_END, acts, (), frozenset(), frozenset(), ()))

    assert kpis.per_day.average == 200
    assert kpis.per_day.status is Status.MANAGEABLE


@pytest.mark.parametrize("end", [DAY_START, DAY_START - timedelta(seconds=1)])
def test_an_empty_or_reversed_window_is_refused(end: datetime) -> None:
    with pytest.raises(ValueError, match="end after it starts"):
        compute(KpiWindow(DAY_START, end, (), (), frozenset(), frozenset(), ()))
