"""Where one OPC UA server's observations go: checked and published exactly as
`POST /v1/observations` publishes them, or dead-lettered with the server, the node id and the
reason. A bus that does not take a message is asked again after a growing wait, and the link's
readiness says so meanwhile (`holding`)."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import msgspec
from nats.errors import Error as NatsError

from services.common.bus.channel import ChannelPublisher
from services.common.bus.publisher import PublishRejected
from services.common.contracts import ObservationBatch
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.ingest.bridges import metrics
from services.ingest.bridges.deadletter import BridgeDeadLetters
from services.ingest.bridges.mqtt_mapping import Unmapped, resolve_tenant
from services.ingest.bridges.opcua_config import ReconnectConfig, ServerConfig
from services.ingest.domain.contract import ObservationIn
from services.ingest.intake import Limits, check_all, encode_checked

log = get_logger(__name__)

BRIDGE = "opcua"
SOURCE = "/ingest/bridges/opcua"
# (node id, its observation)
Item = tuple[str, ObservationIn]


class Outlet:
    def __init__(
        self,
        server: ServerConfig,
        *,
        registry: Callable[[], SiteRegistry],
        publisher: ChannelPublisher[ObservationBatch],
        dead: BridgeDeadLetters,
        limits: Limits,
        retry: ReconnectConfig,
    ) -> None:
        self._server = server
        self._registry = registry
        self._publisher = publisher
        self._dead = dead
        self._limits = limits
        self._retry = retry
        # Set while a message waits for the bus, with the bus's answer.
        self.holding: str | None = None

    async def publish(self, items: Sequence[Item], now: datetime) -> None:
        """Publish the observations (grouped by tenant); what the registry refuses is
        dead-lettered under its node id."""
        registry = self._registry()
        by_site: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            by_site[item[1].site].append(item)
        by_tenant: dict[str, list[Item]] = defaultdict(list)
        for site, group in by_site.items():
            try:
                by_tenant[resolve_tenant((o for _, o in group), self._server.tenant, registry)].extend(group)
            except Unmapped as err:  # the site left the registry since start-up
                log.warning("opcua_site_unmapped", server=self._server.name, site=site)
                for node, obs in group:
                    await self.deadletter(
                        node, msgspec.to_builtins(obs), reason=str(err), category=err.category
                    )
        for tenant, group in by_tenant.items():
            checked = check_all(enumerate(o for _, o in group), registry, now, self._limits)
            encoded = encode_checked(
                checked, tenant=tenant, source=SOURCE, received=now, max_payload=self._publisher.max_payload
            )
            if encoded.messages:
                await self.until_taken(functools.partial(self._publisher.publish, encoded.messages))
                metrics.PUBLISHED.labels(BRIDGE).inc(sum(1 for i in encoded.ids if i))
            if checked.errors:
                metrics.REJECTED_ITEMS.labels(BRIDGE).inc(len(checked.errors))
            for error in checked.errors:
                node, obs = group[error.index]
                reason = f"{error.field or 'item'}: {error.detail}"
                await self.deadletter(node, msgspec.to_builtins(obs), reason=reason, category="invalid")

    async def deadletter(self, node: str, content: object, *, reason: str, category: str) -> None:
        """Keep what could not be used in DEADLETTER, on `<server>/<node id>`."""
        topic = f"{self._server.name}/{node}"
        payload = msgspec.json.encode(content)
        await self.until_taken(lambda: self._dead.send(topic, payload, reason=reason, category=category))

    async def until_taken(self, send: Callable[[], Awaitable[object]]) -> None:
        """`send` again, after a growing wait, until JetStream takes it; the subscription's data
        changes wait in the client meanwhile."""
        delay = self._retry.min_s
        try:
            while True:
                try:
                    await send()
                    return
                except (UnavailableError, PublishRejected, NatsError, TimeoutError) as err:
                    self.holding = f"the event bus did not take a message: {err}"
                    log.warning(
                        "opcua_publish_retry", server=self._server.name, error=str(err), retry_in_s=delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry.max_s)
        finally:
            self.holding = None
