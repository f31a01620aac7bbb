"""The SNAPSHOTS stream: the copies with faces blurred of detections' snapshots, for the feed.

`snapshot.<tenant>.<site>.<ref>`: one message per snapshot, its payload the blurred JPEG, its
`Nats-Msg-Id` the snapshot's ULID. The originals never travel on the bus (they stay in
`video_snapshots`, served to the tenant by GET /v1/snapshots/{ref}). The stream is the hub's
alone: no city credential imports it. The feed copies from it the pictures of the events a sharing
policy shared (services/feed/snapshot_copies.py); services never read each other's tables.
"""

from __future__ import annotations

from services.common.bus.streams import StreamDef
from services.common.settings import StreamConfig

# As long as `video.snapshot_retention_days` keeps the originals by default (30 days).
SNAPSHOTS_DEFAULT_LIMITS = StreamConfig(max_age_hours=24.0 * 30)

SNAPSHOTS = StreamDef(
    "SNAPSHOTS",
    ("snapshot.>",),
    "Detections' snapshots with faces blurred, one per snapshot, for the city feed to copy",
    config_key="snapshots",
    default_limits=SNAPSHOTS_DEFAULT_LIMITS,
)
BLURRED_TYPE = "org.safetyhub.snapshot.blurred.v1"


def blurred_subject(tenant: str, site: str, ref: str) -> str:
    return f"snapshot.{tenant}.{site}.{ref}"
