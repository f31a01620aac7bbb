"""When a rule is armed: days of the week and a window of local time, which may span midnight
(an intrusion zone armed 18:00 to 06:00 on working days is armed on Friday night until Saturday
06:00). Pure: the local time is a parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Schedule:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time  # equal to start: the whole day

    def armed(self, local: datetime) -> bool:
        now = local.time()
        if self.start == self.end:
            return local.weekday() in self.days
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # Over midnight: the evening part belongs to its own day, the morning part to the day before.
        if now >= self.start:
            return local.weekday() in self.days
        if now < self.end:
            return (local.weekday() - 1) % 7 in self.days
        return False


def parse(days: Sequence[str], start: str, end: str) -> Schedule:
    return Schedule(
        frozenset(DAYS.index(d) for d in days), time.fromisoformat(start), time.fromisoformat(end)
    )
