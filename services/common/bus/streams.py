"""JetStream streams, created or updated idempotently at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType
from nats.js.api import StreamConfig as JsStreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from services.common.logging import get_logger
from services.common.settings import BusConfig, StreamConfig

log = get_logger(__name__)

OBSERVATIONS = "OBSERVATIONS"
DEADLETTER = "DEADLETTER"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: list[str]
    limits: StreamConfig
    description: str


def observation_subject(tenant: str, site: str, device: str) -> str:
    return f"obs.{tenant}.{site}.{device}"


def hub_streams(config: BusConfig) -> list[StreamSpec]:
    return [
        StreamSpec(
            OBSERVATIONS,
            ["obs.>"],
            config.observations,
            "Readings and detections: one message per device and post",
        ),
        StreamSpec(DEADLETTER, ["deadletter.>"], config.deadletter, "Messages a consumer could not process"),
    ]


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


async def ensure_streams(js: JetStreamContext, specs: list[StreamSpec]) -> None:
    """Create each stream, or bring an existing one to the configured limits."""
    for spec in specs:
        wanted = _js_config(spec)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(wanted)
                log.info("stream_created", stream=spec.name, subjects=spec.subjects)
                continue
            except BadRequestError:  # another worker created it a moment ago: update instead
                pass
        await js.update_stream(wanted)
        log.info("stream_updated", stream=spec.name)
