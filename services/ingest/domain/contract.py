"""What a gateway posts: one observation as JSON (the proto3 JSON mapping of `Observation`, flat).

Field names are single words so the proto3 JSON name and the proto field name coincide; the
envelope is built by the hub, except `id` and `correlationId` which a client may choose.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from services.common.types import ClientId, DeviceId, Kind, Slug

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# PostgreSQL text and jsonb cannot hold U+0000: refuse it at the door (422 naming the field) rather
# than accept an observation the store could never write.
NO_NUL = r"^[^\x00]*\Z"
Text32 = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NO_NUL)]
Reference = Annotated[str, msgspec.Meta(max_length=2048, pattern=NO_NUL)]
AttrKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
AttrValue = Annotated[str, msgspec.Meta(max_length=256, pattern=NO_NUL)]
QualityName = Literal["good", "uncertain", "bad", "QUALITY_GOOD", "QUALITY_UNCERTAIN", "QUALITY_BAD"]


class BoxIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    x: Fraction
    y: Fraction
    width: Fraction
    height: Fraction


class PositionIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    latitude: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    altitude: float | None = None


class ObservationIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    site: Slug
    device: DeviceId
    kind: Kind
    id: ClientId | None = None
    # RFC 3339 with an offset; absent means "now" (the hub's receive time).
    time: datetime | None = None
    value: float | None = None
    unit: Text32 | None = None
    quality: QualityName = "good"
    confidence: Fraction | None = None
    box: BoxIn | None = None
    snapshot: Reference | None = None
    position: PositionIn | None = None
    attributes: Annotated[dict[AttrKey, AttrValue], msgspec.Meta(max_length=32)] = {}
    correlation_id: ClientId | None = msgspec.field(default=None, name="correlationId")
