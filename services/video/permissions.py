"""What the video service's routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

READ_SNAPSHOTS = Permission(
    "snapshots.read",
    frozenset({"viewer", "responder", "operator", "admin"}),
    "read the snapshots of video detections",
)
