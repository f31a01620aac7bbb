"""Personal protective equipment on a tracked person: which required items are missing.

A PPE model reports people and items as classes of their own: worn items (`helmet`, `vest`) and,
in many models, their absence (`no_helmet`, `no_vest`, or a bare `head`). Class names differ
from model to model, so each item names its classes. An item's box belongs to the person whose
box holds its centre (the smallest such box, when people overlap).

A person is without an item on a frame when a class meaning it is missing is seen on them; for
an item whose model has no such class, when no class meaning it is worn is. Evidence of absence
is preferred where a model gives it: a helmet the detector missed on one frame is not a
violation. Pure: tracks in, item names out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.video.domain.geometry import Box
from services.video.domain.tracker import Track


@dataclass(frozen=True, slots=True)
class PpeItem:
    name: str  # as reported: `helmet`, `vest`
    worn: frozenset[str]  # classes meaning it is worn
    missing: frozenset[str] = frozenset()  # classes meaning it is not


def _holds(box: Box, item: Box) -> bool:
    cx, cy = (item.x1 + item.x2) / 2.0, (item.y1 + item.y2) / 2.0
    return box.x1 <= cx <= box.x2 and box.y1 <= cy <= box.y2


def _without(item: PpeItem, seen: set[str]) -> bool:
    if item.missing:
        return bool(seen & item.missing)
    return not seen & item.worn


def owner(item: Track, people: Sequence[Track]) -> Track | None:
    """The person an item's box belongs to: the smallest box holding its centre."""
    holding = [p for p in people if _holds(p.box, item.box)]
    return min(holding, key=lambda p: p.box.area) if holding else None


def missing_items(
    person: Track, people: Sequence[Track], tracks: Sequence[Track], items: Sequence[PpeItem]
) -> tuple[tuple[str, ...], float]:
    """The required items `person` is without on this frame, and the confidence of that: the
    strongest detection of an absence, or the person's own where only a worn item is missing."""
    seen: set[str] = set()
    confidence = 0.0
    for track in tracks:
        if track.id == person.id or not _holds(person.box, track.box):
            continue
        if owner(track, people) is not person:
            continue
        seen.add(track.label)
        if any(track.label in item.missing for item in items):
            confidence = max(confidence, track.confidence)
    without = tuple(item.name for item in items if _without(item, seen))
    if without and confidence == 0.0:
        confidence = person.confidence
    return without, confidence
