"""JetStream streams: what a service declares, and creating or updating them idempotently.

A service declares the streams it owns as `StreamDef`s; their limits come from the config's `bus:`
section under the stream's `config_key`, so `bus: {observations: {...}}` configures the stream its
owner declares. The kernel owns DEADLETTER, where every consumer moves what it cannot process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType
from nats.js.api import StreamConfig as JsStreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from services.common.logging import get_logger
from services.common.settings import BusConfig, StreamConfig

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamDef:
    """A stream as its owner declares it; the limits are read from `bus.<config_key>`."""

    name: str
    subjects: tuple[str, ...]
    description: str
    config_key: str
    default_limits: StreamConfig = field(default_factory=StreamConfig)

    def limits(self, bus: BusConfig) -> StreamConfig:
        value = getattr(bus, self.config_key, None)
        return value if isinstance(value, StreamConfig) else self.default_limits

    def spec(self, bus: BusConfig) -> StreamSpec:
        return StreamSpec(self.name, list(self.subjects), self.limits(bus), self.description)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: list[str]
    limits: StreamConfig
    description: str


DEADLETTER_STREAM = StreamDef(
    "DEADLETTER",
    ("deadletter.>",),
    "Messages a consumer could not process",
    config_key="deadletter",
    default_limits=BusConfig().deadletter,
)
DEADLETTER = DEADLETTER_STREAM.name


def deadletter_subject(consumer: str, subject: str) -> str:
    """Where consumer `consumer` moves a message it read on `subject`."""
    return f"deadletter.{consumer}.{subject}"


def stream_specs(bus: BusConfig, defs: Iterable[StreamDef]) -> list[StreamSpec]:
    """The specs of `defs` with the configured limits, each stream once, in the order given."""
    seen: dict[str, StreamDef] = {}
    for stream in defs:
        if stream.name in seen and seen[stream.name] is not stream:
            raise ValueError(f"two declarations of stream {stream.name}")
        seen[stream.name] = stream
    return [stream.spec(bus) for stream in seen.values()]


def _js_config(spec: StreamSpec) -> JsStreamConfig:
    limits = spec.limits
    return JsStreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=spec.subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
        max_age=limits.max_age_hours * 3600.0,
        max_bytes=limits.max_bytes_mb * 1024 * 1024 if limits.max_bytes_mb > 0 else -1,
        discard=DiscardPolicy.OLD,
        duplicate_window=limits.duplicate_window_s,
        num_replicas=limits.replicas,
    )


# JetStream's "error creating store for stream": a stream of that name deleted a moment ago
# whose files the server is still removing. Brief, so it is tried again a few times.
_STORE_NOT_READY = 10049
_CREATE_TRIES = 5


async def _create(js: JetStreamContext, wanted: JsStreamConfig) -> None:
    for attempt in range(1, _CREATE_TRIES + 1):
        try:
            await js.add_stream(wanted)
            return
        except ServerError as err:
            if err.err_code != _STORE_NOT_READY or attempt == _CREATE_TRIES:
                raise
            log.warning("stream_store_not_ready", stream=wanted.name, attempt=attempt)
            await asyncio.sleep(0.1 * attempt)


async def ensure_streams(js: JetStreamContext, specs: Sequence[StreamSpec]) -> None:
    """Create each stream, or bring an existing one to the configured limits."""
    for spec in specs:
        wanted = _js_config(spec)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await _create(js, wanted)
                log.info("stream_created", stream=spec.name, subjects=spec.subjects)
                continue
            except BadRequestError:  # another worker created it a moment ago: update instead
                pass
        await js.update_stream(wanted)
        log.info("stream_updated", stream=spec.name)
