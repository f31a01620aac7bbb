"""Zone rules over tracks: intrusion into a restricted zone, loitering in a zone (lines: lines.py).

A tracked object is in a zone when the bottom centre of its box is (where it stands). Intrusion
fires once when a confirmed track enters the zone, and again only after it has left; loitering
fires once when a track has stayed in the zone `seconds` without leaving. Pure: the frame's time
is a parameter, and the state is which track is in which zone since when.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from services.video.domain.geometry import Box, Polygon, foot_in
from services.video.domain.tracker import Track


class RuleKind(enum.StrEnum):
    INTRUSION = "intrusion"
    LOITERING = "loitering"
    LINE_CROSSING = "line_crossing"


@dataclass(frozen=True, slots=True)
class ZoneRule:
    kind: RuleKind
    labels: frozenset[str]  # the classes the rule watches, e.g. {"person"}
    seconds: float = 0.0  # loitering: time in the zone before it fires


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


@dataclass(slots=True)
class _Stay:
    since: float
    fired: set[RuleKind]


class ZoneRules:
    def __init__(self, zones: Sequence[CameraZone]) -> None:
        self._zones = tuple(zones)
        self._stays: dict[tuple[str, int], _Stay] = {}

    def evaluate(self, tracks: Sequence[Track], width: float, height: float, now: float) -> list[Firing]:
        """What fires on this frame, given the confirmed tracks seen in it."""
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
                    if track.label not in rule.labels or rule.kind in stay.fired:
                        continue
                    if rule.kind is RuleKind.LOITERING and now - stay.since < rule.seconds:
                        continue
                    stay.fired.add(rule.kind)
                    firings.append(
                        Firing(
                            rule.kind,
                            zone.id,
                            track.id,
                            track.label,
                            track.box,
                            track.confidence,
                            now,
                            now - stay.since,
                        )
                    )
        # A track that left a zone (or was lost) starts afresh when it comes back.
        for key in set(self._stays) - present:
            del self._stays[key]
        return firings
