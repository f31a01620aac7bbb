"""What alarm messages and the domain share on the wire: enum tables, times, flags, the error.

Enums map by name (domain member NAME <-> proto value PREFIX_NAME), derived from both enums, so
a value added to one and not the other fails at the first import, not on the first alarm.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from services.alarms.domain.model import AlarmClass, AlarmState, ConditionType, Priority
from services.common.bus.consumer import Poison
from services.common.contracts import AlarmClass as AlarmClassPb
from services.common.contracts import AlarmCondition as AlarmConditionPb
from services.common.contracts import AlarmPriority as AlarmPriorityPb
from services.common.contracts import AlarmState as AlarmStatePb
from services.common.errors import SafetyhubError

# The quality flags an alarm can carry (ISA-18.2 alarm performance), each a field of `Alarm`.
CHATTERING = "chattering"
FLEETING = "fleeting"
FLAGS = frozenset({CHATTERING, FLEETING})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AlarmMessageError(SafetyhubError):
    """A domain value no alarm message can carry (a naive time, a dot in a subject token, a flag
    without a field): a bug in the producer, raised before anything is emitted."""


class UndecodableAlarm(AlarmMessageError, Poison):
    """An alarm message that does not map to the domain (an unknown enum value, a missing part).
    A `Poison`: a consumer dead-letters it rather than retrying."""


E = TypeVar("E", bound=enum.Enum)
V = TypeVar("V", bound=int)


def _by_name(domain: type[E], prefix: str, numbers: dict[str, V]) -> tuple[dict[E, V], dict[int, E]]:
    to_pb = {member: numbers[prefix + member.name] for member in domain}
    return to_pb, {number: member for member, number in to_pb.items()}


STATE, STATE_BACK = _by_name(AlarmState, "ALARM_STATE_", dict(AlarmStatePb.items()))
PRIORITY, PRIORITY_BACK = _by_name(Priority, "ALARM_PRIORITY_", dict(AlarmPriorityPb.items()))
CLASS, CLASS_BACK = _by_name(AlarmClass, "ALARM_CLASS_", dict(AlarmClassPb.items()))
CONDITION, CONDITION_BACK = _by_name(ConditionType, "ALARM_CONDITION_", dict(AlarmConditionPb.items()))


def back(table: dict[int, E], number: int, what: str) -> E:
    """The domain value of a proto enum number; an error for one this build does not know
    (a newer producer's, or UNSPECIFIED), rather than a guess."""
    try:
        return table[number]
    except KeyError:
        raise UndecodableAlarm(f"{what} {number} is not one this build knows") from None


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        # A naive time has no instant: refusing it beats guessing the server's zone.
        raise AlarmMessageError(f"{moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def split(moment: datetime) -> tuple[int, int]:
    """(seconds, nanos) since the epoch. Exact integer arithmetic: a float timestamp would lose
    microseconds and change a derived id."""
    delta = utc(moment) - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


def millis(moment: datetime) -> int:
    seconds, nanos = split(moment)
    return seconds * 1000 + nanos // 1_000_000


def instant(moment: datetime) -> str:
    """The exact instant as text, for digests."""
    seconds, nanos = split(moment)
    return f"{seconds}.{nanos:09d}"


def rfc3339(moment: datetime) -> str:
    return utc(moment).isoformat().replace("+00:00", "Z")


def set_timestamp(target: Timestamp, moment: datetime) -> None:
    target.seconds, target.nanos = split(moment)


def from_timestamp(stamp: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)
