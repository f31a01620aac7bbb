"""A rule firing as an observation `video.<rule>`, encoded by ingest's encoder.

The observation is built as a gateway would post it and handed to the same encoder the HTTP
ingest path uses, so a camera detection and a posted one are the same message on the bus
(a batch of one on `obs.<tenant>.<site>.<device>`, its id derived the same way).
"""

from __future__ import annotations

from datetime import datetime

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts.cloudevents import ce_headers
from services.ingest.domain.contract import BoxIn, ObservationIn
from services.ingest.encode import observation_id, to_message
from services.video.adapters.snapshots import Snapshot
from services.video.channel import BLURRED_TYPE, blurred_subject
from services.video.domain.health import Condition
from services.video.domain.rules import Firing, RuleKind


def snapshot_path(ref: str) -> str:
    return f"/v1/snapshots/{ref}"


def firing_observation(
    firing: Firing, *, site: str, device: str, taken: datetime, frame: tuple[int, int], snapshot: str
) -> ObservationIn:
    width, height = frame
    x, y, w, h = firing.box.normalised(width, height)
    return ObservationIn(
        site=site,
        device=device,
        kind=f"video.{firing.rule.value}",
        time=taken,
        confidence=round(firing.confidence, 4),
        box=BoxIn(x=x, y=y, width=w, height=h),
        snapshot=snapshot_path(snapshot),
        attributes={
            "camera": device,
            # A line crossing names its line; the other rules their zone.
            ("line" if firing.rule is RuleKind.LINE_CROSSING else "zone"): firing.zone,
            "track_id": str(firing.track_id),
            "label": firing.label,
            "dwell_s": f"{firing.dwell_s:.1f}",
            **({"direction": firing.direction} if firing.direction else {}),
            # A PPE violation names what was missing.
            **({"missing": ",".join(firing.missing)} if firing.missing else {}),
        },
    )


def health_observation(condition: Condition, *, site: str, device: str, taken: datetime) -> ObservationIn:
    """A change of a camera's condition: `video.camera_health`, 0 when ok, 1 when not."""
    return ObservationIn(
        site=site,
        device=device,
        kind="video.camera_health",
        time=taken,
        value=0.0 if condition is Condition.OK else 1.0,
        attributes={"camera": device, "condition": condition.value},
    )


def source_of(site: str, device: str) -> str:
    """The envelope's `source` of a camera's detections (ingest's is `/ingest/keys/<key id>`)."""
    return f"/video/{site}/{device}"


def encode(item: ObservationIn, *, tenant: str, received: datetime) -> tuple[str, OutgoingMessage]:
    """The observation's id and its bus message."""
    return (
        observation_id(item, tenant=tenant, received=received),
        to_message(item, tenant=tenant, source=source_of(item.site, item.device), received=received),
    )


def blurred_message(snapshot: Snapshot) -> OutgoingMessage:
    """The snapshot's copy with faces blurred on SNAPSHOTS, its id the snapshot's ULID (a retried
    unit of work emits it again under that id, and JetStream keeps one). Only `blurred` goes on
    the bus: the original stays in the video service's table."""
    headers = ce_headers(
        id=snapshot.ref,
        type=BLURRED_TYPE,
        source=source_of(snapshot.site, snapshot.device),
        time=snapshot.taken.isoformat(),
    )
    return OutgoingMessage(
        blurred_subject(snapshot.tenant, snapshot.site, snapshot.ref),
        snapshot.blurred,
        {**headers, "Content-Type": "image/jpeg"},
    )
