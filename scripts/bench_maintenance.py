"""What asking "is this notification muted?" costs the escalation consumer, per incident.

    .venv/bin/python scripts/bench_maintenance.py --windows 50 --calls 200

A site with `--windows` maintenance windows (half weekly RRULEs over six years of history, half
weeknight crons, spread over its zones and the whole site), asked about a non-safety incident in
one zone: at a moment no window runs, and at one a weekly window runs (then the end of the
muting is looked for too, a day ahead at most). The consumer asks once per incident per batch.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from services.escalation.domain.maintenance import Cron, MaintenanceWindow, RRule
from services.escalation.domain.muting import Subject, hold

ZONES = ["cdu-1", "fcc-2", "vrds", "sru", None]


def windows(count: int) -> list[MaintenanceWindow]:
    out = []
    for i in range(count):
        schedule: RRule | Cron = (
            RRule(rrule="FREQ=WEEKLY;BYDAY=SA", dtstart=datetime(2020, 1, 4, 2), duration=timedelta(hours=4))
            if i % 2
            else Cron(cron="0 22 * * 1-5", duration=timedelta(hours=2))
        )
        out.append(
            MaintenanceWindow(
                id=f"w{i}", site="ulsan-refinery", zone=ZONES[i % 5], timezone="Asia/Seoul", schedule=schedule
            )
        )
    return out


def per_call_us(found: list[MaintenanceWindow], at: datetime, calls: int, *, muted: bool) -> float:
    subject = Subject("ulsan-refinery", ("fcc-2",), safety_class=False)
    hold(found, subject, "opened", at)  # rules parsed and their starts computed once, as in the hub
    started = time.perf_counter()
    for k in range(calls):
        held = hold(found, subject, "opened", at + timedelta(seconds=k))
        assert (held is not None) == muted
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    found = windows(args.windows)
    quiet = datetime(2026, 6, 13, 0, 0, tzinfo=UTC)  # Saturday 09:00 in Seoul
    during = datetime(2026, 6, 12, 18, 0, tzinfo=UTC)  # Saturday 03:00 in Seoul: the weekly ones run
    print(f"{args.windows} windows, not muted: {per_call_us(found, quiet, args.calls, muted=False):.0f} us")
    print(f"{args.windows} windows, muted: {per_call_us(found, during, args.calls, muted=True):.0f} us")


if __name__ == "__main__":
    main()
