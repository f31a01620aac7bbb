"""An IoU tracker: detections of successive frames joined into tracks that carry an id.

A track is confirmed only after `min_hits` frames with a match, so one spurious detection never
fires a rule (debouncing), and survives `max_missed` analysed frames without one, so a detector
that blinks for a frame does not give the same person a new id. Matching is greedy on the
highest overlap, within one label. Time is a parameter, never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.video.domain.detection import Detection
from services.video.domain.geometry import Box


@dataclass(slots=True)
class Track:
    id: int
    label: str
    box: Box
    confidence: float
    first_seen: float
    last_seen: float
    hits: int = 1
    missed: int = 0
    confirmed: bool = False


class IouTracker:
    def __init__(self, *, min_iou: float = 0.3, min_hits: int = 3, max_missed: int = 5) -> None:
        self._min_iou = min_iou
        self._min_hits = min_hits
        self._max_missed = max_missed
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> Sequence[Track]:
        return tuple(self._tracks)

    def update(self, detections: Sequence[Detection], now: float) -> list[Track]:
        """Match `detections` of the frame at `now`; return the confirmed tracks seen in it."""
        pairs = sorted(
            (
                (track.box.iou(det.box), t, d)
                for t, track in enumerate(self._tracks)
                for d, det in enumerate(detections)
                if track.label == det.label
            ),
            key=lambda p: -p[0],
        )
        matched_tracks: set[int] = set()
        matched_detections: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < self._min_iou:
                break
            if t in matched_tracks or d in matched_detections:
                continue
            matched_tracks.add(t)
            matched_detections.add(d)
            track, det = self._tracks[t], detections[d]
            track.box, track.confidence, track.last_seen = det.box, det.confidence, now
            track.hits += 1
            track.missed = 0
            track.confirmed = track.confirmed or track.hits >= self._min_hits
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self._max_missed]
        for d, det in enumerate(detections):
            if d not in matched_detections:
                self._tracks.append(
                    Track(
                        self._next_id,
                        det.label,
                        det.box,
                        det.confidence,
                        now,
                        now,
                        confirmed=self._min_hits <= 1,
                    )
                )
                self._next_id += 1
        return [track for track in self._tracks if track.confirmed and track.missed == 0]

    def hold(self, now: float) -> list[Track]:
        """A frame without motion: nothing moved, so every live track is still where it was.

        Detection is skipped on such frames; the tracks keep their boxes and are seen at `now`,
        so a person standing still in a zone goes on counting towards loitering.
        """
        for track in self._tracks:
            if track.missed == 0:
                track.last_seen = now
        return [track for track in self._tracks if track.confirmed and track.missed == 0]
