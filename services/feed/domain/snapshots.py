"""How a detection's picture is named where the city may fetch it. Pure.

A detection's snapshot is the video service's: `/v1/snapshots/<ULID>` on the tenant's API, the
original JPEG, readable with the tenant's keys only. What may leave is its copy with faces
blurred, and only that of an event a sharing policy shared: the feed copies it onto the
`FEED_SNAPSHOTS` stream under `feedsnap.<tenant>.<site>.<ULID>`, the one subject the city reads it
by (its NATS credentials may get a message of that stream by subject, nothing of the hub's
snapshots). A snapshot reference of any other form (a Frigate URL posted by a gateway) names a
picture the hub holds no blurred copy of, so no reference to it leaves below `full`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The video service's references, as it writes them into observations.
_VIDEO_REF = re.compile(r"^/v1/snapshots/([0-9A-HJKMNP-TV-Z]{26})\Z")
BLURRED_SUBJECT_PREFIX = "feedsnap"
_BLURRED = re.compile(r"^feedsnap\.([^.*> \t\r\n]+)\.([^.*> \t\r\n]+)\.([0-9A-HJKMNP-TV-Z]{26})\Z")


@dataclass(frozen=True, slots=True)
class BlurredRef:
    """A blurred copy: whose picture (tenant, site) and which (the video service's ULID)."""

    tenant: str
    site: str
    ref: str

    @property
    def subject(self) -> str:
        """Where the city gets it: the subject on FEED_SNAPSHOTS."""
        return f"{BLURRED_SUBJECT_PREFIX}.{self.tenant}.{self.site}.{self.ref}"


def video_ref(snapshot: str) -> str | None:
    """The ULID of a video service snapshot reference; None for any other reference."""
    found = _VIDEO_REF.match(snapshot)
    return found.group(1) if found else None


def blurred(tenant: str, site: str, snapshot: str) -> BlurredRef | None:
    """The blurred copy of a detection's snapshot; None when the hub holds none."""
    ref = video_ref(snapshot)
    return None if ref is None else BlurredRef(tenant, site, ref)


def parse_blurred(value: object) -> BlurredRef | None:
    """A blurred copy's subject read back from a shared record; None for anything else."""
    if not isinstance(value, str):
        return None
    found = _BLURRED.match(value)
    return None if found is None else BlurredRef(found.group(1), found.group(2), found.group(3))
