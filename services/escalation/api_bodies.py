"""The endpoints API's bodies and vocabulary: what a request may say, decoded strictly (an
unknown field, a wrong type or value is 422 naming the field), and the names shared with the
policies API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from services.common.http.problem import Problem
from services.escalation.admin_requests import invalid

MAX_OVERLAP_S = 7 * 24 * 3600
DEFAULT_OVERLAP_S = 24 * 3600
_NO_NUL = "^[^\\x00]*$"

Name = Annotated[str, msgspec.Meta(max_length=200, pattern=_NO_NUL)]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
Severity = Literal["Unknown", "Minor", "Moderate", "Severe", "Extreme"]
Format = Literal["json", "cap"]
Language = Literal["ko", "en"]
IncidentTypeName = Literal[
    "gas_release",
    "fire",
    "person_down",
    "intrusion",
    "ppe_violation",
    "equipment_fault",
    "comm_loss",
    "alarm_flood",
]


class NewEndpoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    name: Name = ""
    format: Format = "json"
    language: Language = "en"
    sites: Annotated[list[SiteId], msgspec.Meta(max_length=1000)] | None = None
    min_severity: Severity = "Unknown"
    types: Annotated[list[IncidentTypeName], msgspec.Meta(max_length=20)] | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    secret: str | None = None
    enabled: bool = True


_UNSET: Any = msgspec.UNSET


class EndpointChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    url: Annotated[str, msgspec.Meta(max_length=2048)] | msgspec.UnsetType = _UNSET
    name: Name | msgspec.UnsetType = _UNSET
    format: Format | msgspec.UnsetType = _UNSET
    language: Language | msgspec.UnsetType = _UNSET
    sites: Annotated[list[SiteId], msgspec.Meta(max_length=1000)] | msgspec.UnsetType | None = _UNSET
    min_severity: Severity | msgspec.UnsetType = _UNSET
    types: Annotated[list[IncidentTypeName], msgspec.Meta(max_length=20)] | msgspec.UnsetType | None = _UNSET
    headers: dict[str, str] | msgspec.UnsetType = _UNSET
    enabled: bool | msgspec.UnsetType = _UNSET


class Rotation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    overlap_s: Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP_S)] = DEFAULT_OVERLAP_S
    secret: str | None = None


def invalid_field(field: str, detail: str) -> Problem:
    return invalid("endpoint", field, detail)
