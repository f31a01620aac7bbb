"""Maintenance windows: muting by site and zone, recurrences across time zones, reminders, checks.

Time is a parameter throughout. Dates are in 2026: Europe/Berlin moves to summer time on Sunday
29 March (02:00 -> 03:00) and back on Sunday 25 October; Asia/Seoul has no daylight-saving time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.escalation.domain.maintenance import (
    Cron,
    InvalidWindow,
    MaintenanceWindow,
    OneOff,
    RRule,
    active_windows,
    check_window,
    decode_window,
    is_muted,
    next_change,
    next_reminder,
    reminders_due,
)

SEOUL, BERLIN = ZoneInfo("Asia/Seoul"), ZoneInfo("Europe/Berlin")
SITE = "ulsan-refinery"
ZONES = {SITE: ("cdu-1", "fcc-2", "tank-farm"), "mipo-aromatics": ("px-1",)}
US = timedelta(microseconds=1)


def window(
    schedule: OneOff | RRule | Cron, *, zone: str | None = None, tz: str = "Asia/Seoul", **kw: str
) -> MaintenanceWindow:
    made = MaintenanceWindow(
        id=kw.get("id", "w-1"), site=kw.get("site", SITE), zone=zone, timezone=tz, schedule=schedule
    )
    check_window(made, zones_of=ZONES.get)
    return made


def kst(*args: int) -> datetime:
    return datetime(*args, tzinfo=SEOUL)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# A morning of work on FCC-2: 09:00 to 12:00 Seoul time, written as wall times.
FCC2_MORNING = OneOff(start=datetime(2026, 6, 10, 9, 0), end=datetime(2026, 6, 10, 12, 0))


def muted(windows: list[MaintenanceWindow], at: datetime, zone: str | list[str] | None = "fcc-2") -> bool:
    return is_muted(windows, site=SITE, zone=zone, safety_class=False, at=at)


def test_a_one_off_window_mutes_from_its_start_inclusive_to_its_end_exclusive() -> None:
    windows = [window(FCC2_MORNING, zone="fcc-2")]
    assert not muted(windows, kst(2026, 6, 10, 9, 0) - US)
    assert muted(windows, kst(2026, 6, 10, 9, 0))
    assert muted(windows, utc(2026, 6, 10, 0, 0))  # the same instant in UTC
    assert muted(windows, kst(2026, 6, 10, 12, 0) - US)
    assert not muted(windows, kst(2026, 6, 10, 12, 0))
    [running] = active_windows(windows, SITE, "fcc-2", kst(2026, 6, 10, 10, 30))
    assert (running.start, running.end) == (kst(2026, 6, 10, 9, 0), kst(2026, 6, 10, 12, 0))
    assert running.window is windows[0]


def test_next_change_is_when_the_muting_starts_or_ends() -> None:
    windows = [window(FCC2_MORNING, zone="fcc-2")]

    def change(at: datetime) -> datetime | None:
        return next_change(windows, site=SITE, zone="fcc-2", safety_class=False, at=at)

    assert change(kst(2026, 6, 10, 8, 0)) == kst(2026, 6, 10, 9, 0)
    assert change(kst(2026, 6, 10, 9, 0)) == kst(2026, 6, 10, 12, 0)
    assert change(kst(2026, 6, 10, 12, 0)) is None
    # Another zone never changes: nothing about it is in maintenance.
    assert (
        next_change(windows, site=SITE, zone="cdu-1", safety_class=False, at=kst(2026, 6, 10, 8, 0)) is None
    )


def test_a_safety_class_incident_is_never_muted() -> None:
    windows = [window(FCC2_MORNING), window(FCC2_MORNING, zone="fcc-2", id="w-2")]
    at = kst(2026, 6, 10, 10, 0)
    assert muted(windows, at)
    assert not is_muted(windows, site=SITE, zone="fcc-2", safety_class=True, at=at)
    assert next_change(windows, site=SITE, zone="fcc-2", safety_class=True, at=kst(2026, 6, 10, 8, 0)) is None


def test_a_zone_window_mutes_its_zone_only_and_a_site_window_the_whole_site() -> None:
    at = kst(2026, 6, 10, 10, 0)
    zone_only = [window(FCC2_MORNING, zone="fcc-2")]
    assert muted(zone_only, at, "fcc-2")
    assert not muted(zone_only, at, "cdu-1")
    assert not muted(zone_only, at, None)  # an incident placed in no zone
    # An incident that spread from FCC-2 into CDU-1 is heard: CDU-1 is live.
    assert not muted(zone_only, at, ["fcc-2", "cdu-1"])
    both = [*zone_only, window(FCC2_MORNING, zone="cdu-1", id="w-2")]
    assert muted(both, at, ["fcc-2", "cdu-1"])
    assert muted(both, at, iter(["fcc-2", "cdu-1"]))  # any iterable of zones
    site_wide = [window(FCC2_MORNING)]
    for zone in ("fcc-2", "cdu-1", None, ["fcc-2", "tank-farm"]):
        assert muted(site_wide, at, zone)
    other_site = [window(OneOff(start=FCC2_MORNING.start, end=FCC2_MORNING.end), site="mipo-aromatics")]
    assert not muted(other_site, at, "fcc-2")
    assert active_windows(other_site, SITE, "fcc-2", at) == []


def test_a_weekly_rrule_stays_at_local_wall_time_in_seoul_and_across_berlins_dst() -> None:
    saturdays = RRule(
        rrule="FREQ=WEEKLY;BYDAY=SA", dtstart=datetime(2026, 3, 7, 2, 0), duration=timedelta(hours=4)
    )
    seoul, berlin = (
        [window(saturdays, zone="tank-farm")],
        [window(saturdays, zone="tank-farm", tz="Europe/Berlin")],
    )
    # Seoul: 02:00 KST is 17:00 UTC the day before, every week.
    for day in (20, 27):
        assert muted(seoul, utc(2026, 3, day, 17, 0), "tank-farm")
        assert not muted(seoul, utc(2026, 3, day, 21, 0), "tank-farm")
    assert muted(seoul, utc(2026, 4, 3, 17, 0), "tank-farm")
    # Berlin: 02:00 CET is 01:00 UTC; after 29 March, 02:00 CEST is 00:00 UTC.
    assert muted(berlin, utc(2026, 3, 28, 1, 0), "tank-farm")
    assert not muted(berlin, utc(2026, 3, 28, 1, 0) - US, "tank-farm")
    assert not muted(berlin, utc(2026, 4, 4, 0, 0) - US, "tank-farm")
    assert muted(berlin, utc(2026, 4, 4, 0, 0), "tank-farm")
    assert not muted(berlin, utc(2026, 4, 4, 4, 0), "tank-farm")  # 06:00 CEST, the end
    [running] = active_windows(berlin, SITE, "tank-farm", utc(2026, 4, 4, 1, 0))
    assert running.start == datetime(2026, 4, 4, 2, 0, tzinfo=BERLIN)
    # And back to winter time on 25 October.
    assert muted(berlin, utc(2026, 10, 31, 1, 0), "tank-farm")
    assert not muted(berlin, utc(2026, 10, 31, 0, 59), "tank-farm")
    assert next_change(
        berlin, site=SITE, zone="tank-farm", safety_class=False, at=utc(2026, 3, 30, 0, 0)
    ) == (utc(2026, 4, 4, 0, 0))


def test_a_duration_is_elapsed_time_even_across_the_dst_change() -> None:
    # Saturday 28 March 23:00 CET for 4 hours: the clocks jump at 02:00, so it ends 04:00 CEST.
    night = RRule(
        rrule="FREQ=WEEKLY;COUNT=1", dtstart=datetime(2026, 3, 28, 23, 0), duration=timedelta(hours=4)
    )
    windows = [window(night, tz="Europe/Berlin")]
    end = datetime(2026, 3, 29, 4, 0, tzinfo=BERLIN)
    assert next_change(windows, site=SITE, zone="fcc-2", safety_class=False, at=utc(2026, 3, 29, 0, 0)) == end
    assert end == utc(2026, 3, 29, 2, 0)


def test_starts_in_the_spring_forward_gap_keep_the_windows_in_order() -> None:
    # Every half hour for 10 minutes: 02:00 and 02:30 on 29 March do not exist in Berlin.
    halves = RRule(
        rrule="FREQ=HOURLY;BYMINUTE=0,30", dtstart=datetime(2026, 3, 29), duration=timedelta(minutes=10)
    )
    windows = [window(halves, tz="Europe/Berlin")]
    at, seen = utc(2026, 3, 28, 23, 50), []
    while at < utc(2026, 3, 29, 3, 0):
        changed = next_change(windows, site=SITE, zone=None, safety_class=False, at=at)
        assert changed is not None and changed > at
        seen.append(changed)
        at = changed
    starts = [moment for moment in seen if muted(windows, moment, None)]
    # 01:00 and 01:30 CET, then 02:00 and 02:30, which do not exist and read at winter offset
    # fall on 03:00 and 03:30 CEST: every half hour in UTC, once each, never out of order.
    assert starts[:6] == [
        utc(2026, 3, 29, h, m) for h, m in ((0, 0), (0, 30), (1, 0), (1, 30), (2, 0), (2, 30))
    ]
    assert all(
        end - start == timedelta(minutes=10) for start, end in zip(seen[::2], seen[1::2], strict=False)
    )


def test_a_cron_window_on_weeknights_in_berlin() -> None:
    weeknights = [window(Cron(cron="0 22 * * 1-5", duration=timedelta(hours=8)), tz="Europe/Berlin")]
    friday, monday = utc(2026, 3, 27, 21, 0), utc(2026, 3, 30, 20, 0)  # 22:00 CET, then 22:00 CEST
    assert muted(weeknights, friday) and not muted(weeknights, friday - US)
    assert muted(weeknights, friday + timedelta(hours=8) - US)
    assert not muted(weeknights, friday + timedelta(hours=8))
    assert not muted(weeknights, utc(2026, 3, 28, 21, 0))  # Saturday
    assert muted(weeknights, monday) and not muted(weeknights, monday - US)

    def change(at: datetime) -> datetime | None:
        return next_change(weeknights, site=SITE, zone="cdu-1", safety_class=False, at=at)

    assert change(utc(2026, 3, 28, 12, 0)) == monday  # over the weekend and the DST change
    assert change(monday) == monday + timedelta(hours=8)
    assert change(monday + timedelta(hours=8)) == utc(2026, 3, 31, 20, 0)


def test_a_cron_window_in_seoul_every_first_sunday() -> None:
    first_sundays = [window(Cron(cron="0 6 1-7 * 0", duration=timedelta(hours=2)), zone="cdu-1")]
    # Cron's day-of-month and day-of-week together mean either: every 1st-7th and every Sunday.
    assert muted(first_sundays, kst(2026, 6, 2, 6, 30), "cdu-1")  # a Tuesday, the 2nd
    assert muted(first_sundays, kst(2026, 6, 14, 6, 0), "cdu-1")  # a Sunday, the 14th
    assert not muted(first_sundays, kst(2026, 6, 10, 6, 0), "cdu-1")  # a Wednesday, the 10th


def test_overlapping_and_back_to_back_windows_change_state_only_at_the_outer_ends() -> None:
    three_days = RRule(
        rrule="FREQ=DAILY;COUNT=3", dtstart=datetime(2026, 6, 1, 0, 0), duration=timedelta(days=1)
    )
    overlapping = OneOff(start=datetime(2026, 6, 3, 12, 0), end=datetime(2026, 6, 4, 6, 0))
    windows = [window(three_days, id="days"), window(overlapping, zone="fcc-2", id="extra")]
    at = kst(2026, 6, 1, 0, 0)
    assert next_change(windows, site=SITE, zone="fcc-2", safety_class=False, at=at) == kst(2026, 6, 4, 6, 0)
    assert next_change(windows, site=SITE, zone="cdu-1", safety_class=False, at=at) == kst(2026, 6, 4, 0, 0)
    # Daily windows of 25 hours never end: no change within the horizon.
    endless = [window(RRule(rrule="FREQ=DAILY", dtstart=datetime(2026, 1, 1), duration=timedelta(hours=25)))]
    assert muted(endless, kst(2026, 6, 1, 0, 0))
    assert next_change(endless, site=SITE, zone=None, safety_class=False, at=kst(2026, 6, 1, 0, 0)) is None


def test_a_reminder_is_due_from_its_lead_before_the_end_until_the_end() -> None:
    windows = [window(FCC2_MORNING, zone="fcc-2")]
    lead = timedelta(minutes=15)
    assert reminders_due(windows, kst(2026, 6, 10, 11, 45) - US, lead) == []
    [reminder] = reminders_due(windows, kst(2026, 6, 10, 11, 45), lead)
    assert (reminder.window.id, reminder.due, reminder.expires) == (
        "w-1",
        kst(2026, 6, 10, 11, 45),
        kst(2026, 6, 10, 12),
    )
    assert reminders_due(windows, kst(2026, 6, 10, 11, 59), lead) == [reminder]
    assert reminders_due(windows, kst(2026, 6, 10, 12, 0), lead) == []
    assert next_reminder(windows, kst(2026, 6, 10, 8, 0), lead) == kst(2026, 6, 10, 11, 45)
    assert next_reminder(windows, kst(2026, 6, 10, 11, 45), lead) is None
    # Shorter than its lead: due as it starts.
    short = [window(OneOff(start=datetime(2026, 6, 10, 9, 0), end=datetime(2026, 6, 10, 9, 10)))]
    assert next_reminder(short, kst(2026, 6, 10, 8, 0), lead) == kst(2026, 6, 10, 9, 0)


def test_a_recurrence_running_into_its_next_occurrence_is_reminded_before_the_last_one_ends() -> None:
    three_days = [
        window(RRule(rrule="FREQ=DAILY;COUNT=3", dtstart=datetime(2026, 6, 1), duration=timedelta(days=1)))
    ]
    lead = timedelta(hours=1)
    assert reminders_due(three_days, kst(2026, 6, 1, 23, 30), lead) == []
    assert next_reminder(three_days, kst(2026, 6, 1, 0, 0), lead) == kst(2026, 6, 3, 23, 0)
    [reminder] = reminders_due(three_days, kst(2026, 6, 3, 23, 0), lead)
    assert reminder.expires == kst(2026, 6, 4, 0, 0)
    # A weekly window is reminded each week, 30 minutes before 06:00.
    weekly = [
        window(RRule(rrule="FREQ=WEEKLY", dtstart=datetime(2026, 6, 6, 2), duration=timedelta(hours=4)))
    ]
    assert next_reminder(weekly, kst(2026, 6, 6, 5, 31), timedelta(minutes=30)) == kst(2026, 6, 13, 5, 30)


@pytest.mark.parametrize(
    ("schedule", "field", "words"),
    [
        (
            '{"kind":"rrule","rrule":"FREQ=FORTNIGHTLY","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "RRULE",
        ),
        (
            '{"kind":"rrule","rrule":"BYDAY=SA","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "FREQ is missing",
        ),
        (
            '{"kind":"rrule","rrule":"FREQ=WEEKLY;BYDAY=XX","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "BYDAY",
        ),
        (
            '{"kind":"rrule","rrule":"FREQ=MINUTELY","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "at most hourly",
        ),
        (
            '{"kind":"rrule","rrule":"FREQ=WEEKLY;INTERVAL=0","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "INTERVAL",
        ),
        (
            '{"kind":"rrule","rrule":"DTSTART:20260601T020000\\nRRULE:FREQ=WEEKLY","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "schedule.dtstart",
        ),
        (
            '{"kind":"rrule","rrule":"FREQ=WEEKLY;UNTIL=20261231T000000","dtstart":"2026-06-01T02:00:00","duration":"PT4H"}',
            "schedule.rrule",
            "UTC",
        ),
        (
            '{"kind":"rrule","rrule":"FREQ=WEEKLY","dtstart":"2026-06-01T02:00:00","duration":"PT0S"}',
            "schedule.duration",
            "positive",
        ),
        ('{"kind":"cron","cron":"0 22 * * 1-5","duration":"-PT1H"}', "schedule.duration", "positive"),
        ('{"kind":"cron","cron":"61 * * * *","duration":"PT1H"}', "schedule.cron", "minute"),
        ('{"kind":"cron","cron":"*/5 * * * *","duration":"PT1H"}', "schedule.cron", "at most hourly"),
        ('{"kind":"cron","cron":"0 0 30 2 *","duration":"PT1H"}', "schedule.cron", "day-of-month"),
        ('{"kind":"cron","cron":"0 0 * * * *","duration":"PT1H"}', "schedule.cron", "5 fields"),
        ('{"kind":"cron","cron":"@daily","duration":"PT1H"}', "schedule.cron", "5 fields"),
        ('{"kind":"cron","cron":5,"duration":"PT1H"}', "schedule.cron", "Expected `str`"),
        (
            '{"kind":"once","start":"2026-06-10T12:00:00","end":"2026-06-10T09:00:00"}',
            "schedule.end",
            "after schedule.start",
        ),
        (
            '{"kind":"once","start":"2026-06-10T12:00:00+09:00","end":"2026-06-10T03:00:00Z"}',
            "schedule.end",
            "after",
        ),
        ('{"kind":"once","start":"2026-06-10T12:00:00"}', "schedule.end", "required"),
        ('{"kind":"weekly"}', "schedule.kind", "weekly"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(schedule: str, field: str, words: str) -> None:
    raw = f'{{"id":"w-1","site":"{SITE}","timezone":"Asia/Seoul","schedule":{schedule}}}'
    with pytest.raises(InvalidWindow) as refused:
        decode_window(raw, zones_of=ZONES.get)
    assert refused.value.field == field
    assert words in str(refused.value)
    assert str(refused.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"timezone": "Asia/Ulsan"}, "timezone", "unknown time zone"),
        ({"zone": "no-such-zone"}, "zone", "has no zone"),
        ({"site": "no-such-site"}, "site", "unknown site"),
        ({"site": "Ulsan Refinery"}, "site", "Expected `str` matching"),
        ({"id": ""}, "id", "length"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_a_bad_scope_is_refused_naming_the_field(change: dict[str, str], field: str, words: str) -> None:
    good = {
        "id": "w-1",
        "site": SITE,
        "zone": "fcc-2",
        "timezone": "Asia/Seoul",
        "schedule": {"kind": "cron", "cron": "0 22 * * 1-5", "duration": "PT8H"},
    }
    with pytest.raises(InvalidWindow) as refused:
        decode_window(msgspec.json.encode({**good, **change}), zones_of=ZONES.get)
    assert refused.value.field == field
    assert words in str(refused.value)


def test_a_good_window_reads_back_as_it_was_written() -> None:
    raw = (
        b'{"id":"turnaround-2026","site":"ulsan-refinery","zone":"cdu-1","timezone":"Asia/Seoul",'
        b'"reason":"\xec\xa0\x95\xea\xb8\xb0 \xec\xa0\x90\xea\xb2\x80",'
        b'"schedule":{"kind":"rrule","rrule":"RRULE:FREQ=MONTHLY;BYDAY=1SU;UNTIL=20261231T150000Z",'
        b'"dtstart":"2026-01-04T01:00:00","duration":"PT5H"}}'
    )
    read = decode_window(raw, zones_of=ZONES.get)
    assert read.reason == "정기 점검" and read.zone == "cdu-1"
    assert isinstance(read.schedule, RRule) and read.schedule.duration == timedelta(hours=5)
    assert decode_window(msgspec.json.encode(read)) == read
    # The first Sunday of July 2026 is the 5th; the rule ends with 2026.
    assert muted([read], kst(2026, 7, 5, 1, 0), "cdu-1")
    assert not muted([read], kst(2027, 1, 3, 1, 0), "cdu-1")


def test_times_without_a_zone_are_refused() -> None:
    windows = [window(FCC2_MORNING)]
    with pytest.raises(ValueError, match="timezone-aware"):
        muted(windows, datetime(2026, 6, 10, 10, 0))
    with pytest.raises(ValueError, match="positive"):
        reminders_due(windows, kst(2026, 6, 10, 10, 0), timedelta(0))


# Windows of every kind around one week, and moments in it: `next_change` must name exactly
# the first moment `is_muted` answers differently.
SCHEDULES = st.one_of(
    st.builds(
        lambda day, hour, hours: OneOff(
            start=datetime(2026, 3, day, hour), end=datetime(2026, 3, day, hour) + timedelta(hours=hours)
        ),
        st.integers(25, 31),
        st.integers(0, 23),
        st.integers(1, 30),
    ),
    st.builds(
        lambda rule, hour, hours: RRule(
            rrule=rule, dtstart=datetime(2026, 3, 20, hour), duration=timedelta(hours=hours)
        ),
        st.sampled_from(
            ["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=HOURLY;INTERVAL=7", "FREQ=DAILY;COUNT=4"]
        ),
        st.integers(0, 23),
        st.integers(1, 30),
    ),
    st.builds(
        lambda cron, hours: Cron(cron=cron, duration=timedelta(minutes=30 * hours)),
        st.sampled_from(["0 22 * * 1-5", "30 2 * * *", "0 */6 * * *", "15 8 * * 0"]),
        st.integers(1, 60),
    ),
)
WINDOWS = st.lists(
    st.tuples(
        SCHEDULES, st.sampled_from([None, "fcc-2", "cdu-1"]), st.sampled_from(["Europe/Berlin", "Asia/Seoul"])
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(
    specs=WINDOWS,
    offset_min=st.integers(0, 7 * 24 * 60),
    zone=st.sampled_from([None, "fcc-2", ("fcc-2", "cdu-1")]),
)
def test_next_change_is_the_first_moment_the_answer_changes(
    specs: list[tuple[OneOff | RRule | Cron, str | None, str]],
    offset_min: int,
    zone: str | tuple[str, ...] | None,
) -> None:
    windows = [window(s, zone=z, tz=tz, id=f"w-{n}") for n, (s, z, tz) in enumerate(specs)]
    at = utc(2026, 3, 25) + timedelta(minutes=offset_min)
    horizon = timedelta(days=3)
    now = muted(windows, at, zone)
    change = next_change(windows, site=SITE, zone=zone, safety_class=False, at=at, horizon=horizon)
    end = change if change is not None else at + horizon
    # Every start and end here falls on a quarter hour (whole-hour starts and durations, cron
    # minutes 0, 15 and 30, half-hour durations): probing each quarter hour and the instant
    # before `end` finds any change that was missed.
    probe = at
    while probe < end:
        assert muted(windows, probe, zone) == now, probe
        probe = (probe + timedelta(minutes=15 - probe.minute % 15)).replace(second=0, microsecond=0)
    assert muted(windows, end - US, zone) == now
    if change is not None:
        assert muted(windows, change, zone) != now
