"""The one NATS connection of a process."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.common.bus.client import BusClient
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.redact import redact

log = get_logger(__name__)


async def connect_bus(url: str, *, name: str, connect_timeout: float = 5.0) -> NATS:
    """Connect with endless reconnects: a NATS restart must not take a service down."""

    shown = redact(url)  # the embedded server's URL carries the hub's password
    connection: list[NATS] = []  # set below; the callbacks need to know whether we are closing

    async def on_disconnected() -> None:
        if connection and (connection[0].is_draining or connection[0].is_closed):
            return  # our own drain at shutdown, not an outage
        log.warning("nats_disconnected", url=shown)

    async def on_reconnected() -> None:
        log.info("nats_reconnected", url=shown)

    async def on_error(err: Exception) -> None:
        log.warning("nats_error", error=str(err))

    # nats-py annotates these two as int but takes seconds as floats (as nats.connect passes them).
    timing: dict[str, Any] = {"connect_timeout": connect_timeout, "reconnect_time_wait": 0.5}
    nc = BusClient()
    try:
        await nc.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            **timing,
            # While disconnected, publishes fail at once instead of piling up in a buffer that a
            # crash would lose: the HTTP layer turns that into 503 and the client retries.
            pending_size=0,
            # Subjects are built from tokens the ingest contract already constrained (slugs), so
            # nats-py's per-publish regex check is redundant on the hot path.
            skip_subject_validation=True,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            error_cb=on_error,
        )
    except (NoServersError, NatsTimeoutError, OSError) as err:
        raise UnavailableError(f"NATS at {shown} is unreachable: {err}") from err
    connection.append(nc)
    return nc
