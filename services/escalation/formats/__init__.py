"""Notification formats of the escalation service: CAP 1.2 alerts (`cap.py`)."""

from __future__ import annotations

from services.escalation.formats.cap import (
    CAP_CONTENT_TYPE,
    CAP_NAMESPACE,
    CapAlert,
    CapError,
    CapOrigin,
    CapReference,
    render_cap,
)
from services.escalation.formats.cap_text import Language

__all__ = [
    "CAP_CONTENT_TYPE",
    "CAP_NAMESPACE",
    "CapAlert",
    "CapError",
    "CapOrigin",
    "CapReference",
    "Language",
    "render_cap",
]
