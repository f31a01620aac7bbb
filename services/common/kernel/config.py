"""The hub's config type, composed from the kernel's sections and each service's.

msgspec checks a file against a type, so the type must know every section: each service's section
becomes a field named after the service, and each stream a service owns a field of `bus:`. The
file keeps its shape (`ingest:`, `store:`, `bus: {observations: ...}`) and its strict errors with
file, line and key; only the place that declares each section moved to its service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec

from services.common.bus.streams import StreamDef
from services.common.settings import BusConfig, HubConfig, StreamConfig

_OPTIONS: dict[str, Any] = {"forbid_unknown_fields": True, "frozen": True, "kw_only": True}


def compose_config(
    sections: Sequence[tuple[str, type[msgspec.Struct]]], streams: Sequence[StreamDef]
) -> type[HubConfig]:
    """`HubConfig` plus one field per (name, section type), and `bus` plus one per stream."""
    taken = set(HubConfig.__struct_fields__)
    bus_taken = set(BusConfig.__struct_fields__)
    bus_fields: list[tuple[str, type, StreamConfig]] = []
    for stream in streams:
        if stream.config_key in bus_taken:
            raise ValueError(f"bus.{stream.config_key} is declared twice (stream {stream.name})")
        bus_taken.add(stream.config_key)
        bus_fields.append((stream.config_key, StreamConfig, stream.default_limits))
    bus_type = cast(
        type[BusConfig], msgspec.defstruct("BusConfig", bus_fields, bases=(BusConfig,), **_OPTIONS)
    )
    fields: list[tuple[str, type, Any]] = [("bus", bus_type, bus_type())]
    for name, section in sections:
        if name in taken:
            raise ValueError(f"config key {name!r} is taken by the kernel or another service")
        taken.add(name)
        fields.append((name, section, section()))
    return cast(type[HubConfig], msgspec.defstruct("HubConfig", fields, bases=(HubConfig,), **_OPTIONS))
