"""OPC UA data changes to observations. Pure: the time is a parameter, no client, no server.

A StatusCode's severity (its top two bits, OPC UA Part 4, 7.39) is the observation's quality:
Good -> good, Uncertain -> uncertain, Bad -> bad with the code's name as the reason, and a bad
value is not kept (a Bad code says the value is not a measurement). The code's name travels as
the attribute `opcua_status` whenever it is not plain Good. The observation's time is the
SourceTimestamp, or the ServerTimestamp when the source gives none, or the time it arrived.

The id is derived from (server, node id, that time), so the same value sent again (a
re-subscription sends each node's last value with its old timestamp) dedups on the stream and in
the store, while a new sample of the same node is a new observation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua.ua import status_codes

from services.common.contracts.ids import derived_id
from services.ingest.bridges.opcua_config import NodeMap, ServerConfig
from services.ingest.domain.checks import Checked
from services.ingest.domain.contract import ObservationIn, QualityName

_SEVERITY_BAD = 0x80000000
_SEVERITY_UNCERTAIN = 0x40000000
_SEVERITY_MASK = 0xC0000000
STATUS_ATTRIBUTE = "opcua_status"
COMM_LOSS = "comm_loss"


def quality_of(code: int) -> QualityName:
    """The quality a StatusCode's severity means (the reserved severity 11 counts as bad)."""
    severity = code & _SEVERITY_MASK
    if severity == 0:
        return "good"
    return "uncertain" if severity == _SEVERITY_UNCERTAIN else "bad"


def status_name(code: int) -> str:
    """`BadSensorFailure` for 0x808B0000; the hex form for a code the library does not know."""
    # The low 16 bits are info bits (overflow, limits), not part of the code's name.
    name, doc = status_codes.get_name_and_doc(code & 0xFFFF0000)
    return f"0x{code:08X}" if doc.startswith("Unknown") else name


def as_utc(moment: datetime) -> datetime:
    """asyncua gives naive datetimes in UTC; the hub's are aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def observation_id(server: str, node: str, moment: datetime, *extra: str) -> str:
    stamp = as_utc(moment)
    ms = int(stamp.timestamp() * 1000)
    return derived_id(ms, "opcua", server, node, stamp.isoformat(timespec="microseconds"), *extra)


@dataclass(frozen=True, slots=True)
class Sample:
    """One data change as the client received it."""

    value: Any
    status: int
    source_time: datetime | None
    server_time: datetime | None


class NotANumber(ValueError):
    """A Good or Uncertain value the hub cannot store as a reading (a string, an array...)."""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise NotANumber(f"the value {value!r} is not a finite number")
        return number
    raise NotANumber(f"the value is a {type(value).__name__}, not a number")


def site_of(server: ServerConfig, node: NodeMap) -> str:
    return node.site or server.site or ""


def observation(server: ServerConfig, node: NodeMap, sample: Sample, received: datetime) -> ObservationIn:
    """The observation of one data change; raises NotANumber for a usable status without a number."""
    moment = sample.source_time or sample.server_time
    when = as_utc(moment) if moment is not None else received
    quality = quality_of(sample.status)
    site = site_of(server, node)
    ident = observation_id(server.name, node.node, when)
    if quality == "good":
        return ObservationIn(
            site=site, device=node.device, kind=node.kind, id=ident, time=when, value=_number(sample.value)
        )
    name = status_name(sample.status)
    attributes = {STATUS_ATTRIBUTE: name}
    if quality == "uncertain":
        value = _number(sample.value)
        return ObservationIn(
            site=site,
            device=node.device,
            kind=node.kind,
            id=ident,
            time=when,
            value=value,
            quality="uncertain",
            attributes=attributes,
        )
    return Checked(
        site=site,
        device=node.device,
        kind=node.kind,
        id=ident,
        time=when,
        quality="bad",
        quality_reason=f"opcua: {name}",
        attributes=attributes,
    )


def comm_loss(server: ServerConfig, nodes: Iterable[NodeMap], at: datetime, why: str) -> list[ObservationIn]:
    """One observation per node (quality bad, no value) for an outage of `server` seen at `at`."""
    return [
        Checked(
            site=site_of(server, node),
            device=node.device,
            kind=node.kind,
            id=observation_id(server.name, node.node, at, COMM_LOSS),
            time=at,
            quality="bad",
            quality_reason=f"{COMM_LOSS}: {why}"[:500],
        )
        for node in nodes
    ]
