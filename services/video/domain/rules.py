"""Zone rules over tracks: intrusion, loitering, person down, fire, smoke, PPE (lines: lines.py).

A tracked object is in a zone when the bottom centre of its box is (where it stands). Intrusion
fires once when a confirmed track enters the zone, and again only after it has left; loitering
fires once when a track has stayed in the zone `seconds` without leaving, and so do fire and
smoke (a fire or smoke track persisting `seconds`: one flicker of a detector fires nothing).
Person down fires once when a track has been down for `seconds` in the zone: of a class that
means it (`Fall` of a fall model), or a watched class whose box has turned horizontal (wider
than `DOWN_RATIO` times its height) and stayed where it went down; it fires again only after the
person got up. A PPE violation fires once when a watched person has been without a required item
(ppe.py) for `seconds` in the zone, again only after they wore it all. Pure: the frame's time is
a parameter, and the state is which track is in which zone since when.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.video.domain.geometry import Box, Polygon, foot_in
from services.video.domain.ppe import PpeItem, missing_items
from services.video.domain.schedule import Schedule
from services.video.domain.tracker import Track


class RuleKind(enum.StrEnum):
    INTRUSION = "intrusion"
    LOITERING = "loitering"
    LINE_CROSSING = "line_crossing"
    PERSON_DOWN = "person_down"
    FIRE = "fire"
    SMOKE = "smoke"
    PPE_VIOLATION = "ppe_violation"


# Rules that fire once a watched track has stayed `seconds` in the zone.
_PERSISTING = frozenset({RuleKind.LOITERING, RuleKind.FIRE, RuleKind.SMOKE})


# A person lying is wider than tall; standing or crouching is not (a margin for boxes that jitter).
DOWN_RATIO = 1.2
# A person down who has not moved: the box overlaps the one it had when it went down this much.
STILL_IOU = 0.5


@dataclass(frozen=True, slots=True)
class ZoneRule:
    kind: RuleKind
    labels: frozenset[str]  # the classes the rule watches, e.g. {"person"}
    # loitering: time in the zone; fire / smoke: time it persists there; person down: time down;
    # before it fires.
    seconds: float = 0.0
    # person down: classes that are a person down whatever their box (a fall model's `Fall`).
    down_labels: frozenset[str] = frozenset()
    # When the rule is armed (local time of the site); None: always.
    schedule: Schedule | None = None
    # ppe violation: the items a watched person must wear in the zone.
    ppe: tuple[PpeItem, ...] = ()

    @property
    def watched(self) -> frozenset[str]:
        return self.labels | self.down_labels


@dataclass(frozen=True, slots=True)
class CameraZone:
    id: str
    polygon: Polygon  # fractions of the frame
    rules: tuple[ZoneRule, ...]


@dataclass(frozen=True, slots=True)
class Firing:
    rule: RuleKind
    zone: str
    track_id: int
    label: str
    box: Box  # pixels of the analysed frame
    confidence: float
    time: float
    # Seconds the track had been in the zone when the rule fired.
    dwell_s: float
    # line_crossing: `left_to_right` or `right_to_left`, as seen walking the line from A to B.
    direction: str | None = None
    # ppe_violation: the required items the person was without.
    missing: tuple[str, ...] = ()


@dataclass(slots=True)
class _Stay:
    since: float
    fired: set[RuleKind]
    down_since: float | None = None
    down_box: Box | None = None
    without_since: float | None = None


class ZoneRules:
    def __init__(self, zones: Sequence[CameraZone]) -> None:
        self._zones = tuple(zones)
        self._stays: dict[tuple[str, int], _Stay] = {}

    def evaluate(
        self, tracks: Sequence[Track], width: float, height: float, now: float, local: datetime | None = None
    ) -> list[Firing]:
        """What fires on this frame, given the confirmed tracks seen in it; `local` is the site's
        local time, for scheduled rules (one without it is armed)."""
        firings: list[Firing] = []
        present: set[tuple[str, int]] = set()
        for zone in self._zones:
            for track in tracks:
                if not foot_in(zone.polygon, track.box, width, height):
                    continue
                key = (zone.id, track.id)
                present.add(key)
                stay = self._stays.setdefault(key, _Stay(now, set()))
                for rule in zone.rules:
                    if track.label not in rule.watched:
                        continue
                    if rule.schedule is not None and local is not None and not rule.schedule.armed(local):
                        continue
                    if rule.kind is RuleKind.PERSON_DOWN and not _down_long_enough(stay, rule, track, now):
                        continue
                    missing: tuple[str, ...] = ()
                    confidence = track.confidence
                    if rule.kind is RuleKind.PPE_VIOLATION:
                        missing, confidence = _without_long_enough(stay, rule, track, tracks, now)
                        if not missing:
                            continue
                    if rule.kind in stay.fired:
                        continue
                    if rule.kind in _PERSISTING and now - stay.since < rule.seconds:
                        continue
                    stay.fired.add(rule.kind)
                    firings.append(
                        Firing(
                            rule.kind,
                            zone.id,
                            track.id,
                            track.label,
                            track.box,
                            confidence,
                            now,
                            now - stay.since,
                            missing=missing,
                        )
                    )
        # A track that left a zone (or was lost) starts afresh when it comes back.
        for key in set(self._stays) - present:
            del self._stays[key]
        return firings


def _down_long_enough(stay: _Stay, rule: ZoneRule, track: Track, now: float) -> bool:
    """Update whether the track is down (and since when); whether it has been for `rule.seconds`."""
    box = track.box
    down = track.label in rule.down_labels or box.width > box.height * DOWN_RATIO
    if not down:
        # Up again: the next time down is another fall.
        stay.down_since, stay.down_box = None, None
        stay.fired.discard(RuleKind.PERSON_DOWN)
        return False
    if stay.down_since is None or stay.down_box is None or stay.down_box.iou(box) < STILL_IOU:
        stay.down_since, stay.down_box = now, box
    return now - stay.down_since >= rule.seconds


def _without_long_enough(
    stay: _Stay, rule: ZoneRule, track: Track, tracks: Sequence[Track], now: float
) -> tuple[tuple[str, ...], float]:
    """Update since when the person has been without a required item; the items missing (and the
    confidence of that) once they have been for `rule.seconds`, else nothing."""
    people = [t for t in tracks if t.label in rule.labels]
    missing, confidence = missing_items(track, people, tracks, rule.ppe)
    if not missing:
        # Wearing it all again: taking an item off later is another violation.
        stay.without_since = None
        stay.fired.discard(RuleKind.PPE_VIOLATION)
        return (), 0.0
    if stay.without_since is None:
        stay.without_since = now
    if now - stay.without_since < rule.seconds:
        return (), 0.0
    return missing, confidence
