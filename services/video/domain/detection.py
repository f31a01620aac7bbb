"""What a detector reports for one frame, whichever detector it is."""

from __future__ import annotations

from dataclasses import dataclass

from services.video.domain.geometry import Box


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box  # pixels of the analysed frame
    confidence: float
    label: str
