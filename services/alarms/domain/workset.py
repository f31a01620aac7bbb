"""What the alarm engine works on in one unit of work, and how it is stored. Pure data.

A `Workset` holds the points and site flood detectors a unit of work loaded (repository.py locks
and loads them), and collects what the engine changed: points, flood rows, transitions, edges.
A `PointRecord` is one point's whole working state (condition, state machine, chatter window),
encoded with msgpack into alarm_points.engine_state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from services.alarms.adapters.messages import AlarmView, FloodEdge
from services.alarms.domain import evaluate
from services.alarms.domain import state as machine
from services.alarms.domain.evaluate import ConditionState
from services.alarms.domain.facts import TransitionFacts
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    PointId,
    Priority,
    Rationale,
    Rule,
    Transition,
)
from services.alarms.domain.quality import ChatterState, FloodState
from services.alarms.domain.rules import DeviceRef
from services.alarms.domain.state import PointState

# The rule id of a voting group's confirmed alarm: its point is '<group>--vote'.
VOTE_RULE = "vote"
# Marks a group's point in alarm_points.flags (never on a transition: the bus contract has no field).
CONFIRMED = "confirmed"

# A point whose readings change nothing but the record of what was applied to it (its last
# observation's time and ids) has that progress written at most this often, in observation time:
# most readings of a plant change nothing, and writing each back cost a row update per point per
# batch. What is not written only widens, by at most this much, the window in which an observation
# older than the last one applied is still applied in time order rather than ignored as late; its
# condition, pending changes and timers are always written (see `only_progress`).
PROGRESS_EVERY = timedelta(seconds=5)

SiteKey = tuple[str, str]  # (tenant, site)
# Where a device sits and the kinds it measures, from the site registry; None: not registered.
DeviceLookup = Callable[[str, str, str], tuple[DeviceRef, tuple[str, ...]] | None]


class Observation(msgspec.Struct, frozen=True, array_like=True):
    """What the engine needs of one observation."""

    tenant: str
    site: str
    device: str
    kind: str
    id: str
    at: datetime
    value: float | None = None
    confidence: float | None = None
    quality: int = evaluate.Quality.GOOD
    # The detection's snapshot reference; empty for readings.
    snapshot: str = ""


class PointRecord(msgspec.Struct, frozen=True, array_like=True):
    """The engine's working state of one point: what alarm_points.engine_state holds."""

    state: PointState
    condition: ConditionState | None = None  # None: a voting group's point (its votes decide)
    chatter: ChatterState = ChatterState()
    flags: frozenset[str] = frozenset()  # of its last transition: chattering, fleeting

    @property
    def due(self) -> datetime | None:
        """The earliest pending timer of the point (alarm_points.due)."""
        condition = None if self.condition is None else self.condition.due
        shelve = machine.next_due(self.state)
        if condition is None or (shelve is not None and shelve < condition):
            return shelve
        return condition

    @property
    def condition_due(self) -> datetime | None:
        return None if self.condition is None else evaluate.next_due(self.condition)


_RECORD = msgspec.msgpack.Encoder()
_DECODE_RECORD = msgspec.msgpack.Decoder(PointRecord)
_DECODE_FLOOD = msgspec.msgpack.Decoder(FloodState)


def encode_record(record: PointRecord) -> bytes:
    return _RECORD.encode(record)


# Records decoded before, by their bytes: a record is immutable (frozen, tuples), so the same
# bytes are the same record, and most points' engine_state reads back as it was last written (a
# point whose readings change nothing is written every PROGRESS_EVERY only). Hashing the bytes
# costs a few percent of decoding them (callgrind: about 19,500 instructions a decode). Nothing
# else is kept between units of work: this is decoding saved, not state. Emptied when full
# rather than ordered by use, which would cost every lookup.
_DECODED: dict[bytes, PointRecord] = {}
_DECODED_MAX = 8_192


def decode_record(data: bytes) -> PointRecord:
    record = _DECODED.get(data)
    if record is None:
        record = _DECODE_RECORD.decode(data)
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[bytes(data)] = record
    return record


def encode_flood(flood: FloodState) -> bytes:
    return _RECORD.encode(flood)


def decode_flood(data: bytes) -> FloodState:
    return _DECODE_FLOOD.decode(data)


@dataclass(frozen=True, slots=True)
class Handling:
    """What a point's rule (or voting group) says about how it is shown."""

    condition: ConditionType
    priority: Priority
    alarm_class: AlarmClass
    rationale: Rationale
    latching: bool = False

    @classmethod
    def of_rule(cls, rule: Rule) -> Handling:
        return cls(rule.condition, rule.priority, rule.alarm_class, rule.rationale, rule.latching)


@dataclass(frozen=True, slots=True)
class Emitted:
    """One transition with what it counts for and the alarm as it leaves it."""

    transition: Transition
    facts: TransitionFacts
    alarm: AlarmView


@dataclass(frozen=True, slots=True)
class FloodRow:
    """An alarm_floods row as it now is."""

    tenant: str
    site: str
    began_at: datetime
    ended_at: datetime | None
    activations: int


@dataclass(frozen=True, slots=True)
class Loaded:
    """A point as its unit of work read it: its record and the rule fields its row shows."""

    record: PointRecord
    condition: str
    priority: str
    alarm_class: str
    latched: bool

    def shows_as(self, record: PointRecord, handling: Handling) -> bool:
        """Whether `record` under `handling` shows what the row already does (only the engine's
        working state and the due time differ)."""
        loaded = self.record
        return (
            record.state == loaded.state
            and record.flags == loaded.flags
            and handling.condition.value == self.condition
            and handling.priority.value == self.priority
            and handling.alarm_class.value == self.alarm_class
            and is_latched(record.state, handling) == self.latched
        )


def progress_due(loaded: PointRecord, record: PointRecord) -> bool:
    """Whether the progress of `record` over the `loaded` one is to be written now."""
    before, after = loaded.condition, record.condition
    if before is None or after is None or before.last_at is None or after.last_at is None:
        return True
    return after.last_at - before.last_at >= PROGRESS_EVERY


@dataclass(slots=True)
class Workset:
    """The points and site flood detectors loaded for one unit of work, and what changed."""

    points: dict[PointId, PointRecord] = field(default_factory=dict)
    loaded: dict[PointId, Loaded] = field(default_factory=dict)  # as read, to write back the least
    floods: dict[SiteKey, FloodState] = field(default_factory=dict)
    changed: set[PointId] = field(default_factory=set)
    # Points whose observations changed only the record of what was applied (evaluate.only_progress).
    progressed: set[PointId] = field(default_factory=set)
    floods_changed: set[SiteKey] = field(default_factory=set)
    flood_rows: dict[tuple[str, str, datetime], FloodRow] = field(default_factory=dict)
    emitted: list[Emitted] = field(default_factory=list)
    edges: list[FloodEdge] = field(default_factory=list)
    evaluated: int = 0  # observations applied to at least one rule
    unwatched: int = 0  # observations of an unregistered device or a kind no rule watches
    timers_fired: int = 0

    def to_write(self) -> set[PointId]:
        """The points to write back: every one changed, and those whose progress is due."""
        due = {
            point
            for point in self.progressed - self.changed
            if (loaded := self.loaded.get(point)) is None or progress_due(loaded.record, self.points[point])
        }
        return self.changed | due if due else self.changed

    def put(self, point: PointId, record: PointRecord) -> None:
        if self.points.get(point) is not record:
            self.points[point] = record
            self.changed.add(point)


def is_latched(state: PointState, handling: Handling) -> bool:
    """Held in alarm by a latching rule after its condition cleared, until acknowledged."""
    return handling.latching and state.state is AlarmState.RTNUN and not state.active
