"""The feed service as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg
import msgspec
from aiohttp import web

from services.alarms.channel import ALARMS as ALARMS_STREAM
from services.common.audit import Actor, record
from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.feed import metrics, repository
from services.feed.api import MAX_BODY_BYTES, FeedApi
from services.feed.channel import FEED as FEED_STREAM
from services.feed.config import FeedConfig, SitePolicy
from services.feed.domain.policy import SharingPolicy, tightens
from services.feed.ngsi_export import NgsiExporter
from services.feed.permissions import READ_EXPORTS, SET_SHARING
from services.feed.service import FeedService
from services.feed.snapshot_copies import FEED_SNAPSHOTS
from services.incidents.channel import INCIDENTS as INCIDENTS_STREAM
from services.video.channel import SNAPSHOTS

log = get_logger(__name__)


class Feed(ServiceInstance):
    def __init__(self, context: ServiceContext, config: FeedConfig) -> None:
        self._pool = context.pool
        self._config = config
        self._sites = context.sites
        self.service = FeedService(context.pool, (context.nc, context.js), config, context.sites)
        self._api = FeedApi(context.pool, self.service.outbox, context.sites)
        self._ngsi = NgsiExporter(context.pool, config.ngsi) if config.ngsi is not None else None

    def add_routes(self, app: web.Application) -> None:
        self._api.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        return MAX_BODY_BYTES

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def consumer_running() -> str | None:
            # A standby is ready: it takes over the consumers when the leader goes.
            if self.service.consuming or self.service.standing_by:
                return None
            return "feed consumers not running"

        return {"feed_consumer": consumer_running}

    async def start(self) -> None:
        # The config's policies first: the consumers must not share under a policy it replaced.
        await apply_config_policies(self._pool, self._config.policies, self._sites)
        await self.service.start()
        if self._ngsi is not None:
            await self._ngsi.start()

    async def stop(self) -> None:
        if self._ngsi is not None:
            await self._ngsi.stop()
        await self.service.stop()


async def apply_config_policies(
    pool: asyncpg.Pool, policies: list[SitePolicy], sites: Callable[[], SiteRegistry]
) -> None:
    """Write each configured policy that changed since the config last set it as the site's next
    version, audited as the command running the hub. An unchanged one leaves a policy set through
    the API since in force."""
    registry = sites()
    actor = Actor.command()
    for configured in policies:
        if registry.tenant_of(configured.site) != configured.tenant:
            log.warning("feed_policy_site_unknown", tenant=configured.tenant, site=configured.site)
        policy = msgspec.convert(
            {k: v for k, v in msgspec.to_builtins(configured).items() if k not in ("tenant", "site")},
            SharingPolicy,
        )
        async with pool.acquire() as conn, conn.transaction():
            if not await repository.config_policy_changed(conn, configured.tenant, configured.site, policy):
                continue
            before = await repository.latest_policy(conn, configured.tenant, configured.site)
            written = await repository.set_policy(
                conn, configured.tenant, configured.site, policy, source="config", set_by="config"
            )
            await record(
                conn,
                actor.entry(
                    "sharing_policy.set",
                    tenant=configured.tenant,
                    target=configured.site,
                    reason="config file",
                    detail={
                        "version": written.version,
                        "level": str(policy.level),
                        "previous_version": before.version if before else 0,
                        "tightens": tightens(before.policy if before else SharingPolicy(), policy),
                        "policy": msgspec.to_builtins(policy),
                    },
                ),
            )
        log.info(
            "feed_policy_configured",
            tenant=configured.tenant,
            site=configured.site,
            version=written.version,
            level=str(policy.level),
        )


FEED: Service[FeedConfig] = Service(
    name="feed",
    description="JetStream INCIDENTS and ALARMS -> what each site's sharing policy allows, on FEED",
    config=FeedConfig,
    factory=Feed,
    streams=(FEED_STREAM, FEED_SNAPSHOTS),
    # SNAPSHOTS: read by subject, the blurred copies of shared events' pictures (no consumer).
    consumes=(INCIDENTS_STREAM, ALARMS_STREAM, SNAPSHOTS),
    migrations="services.feed",
    permissions=(SET_SHARING, READ_EXPORTS),
    panel=(PanelRow("City feed exports", metrics.EXPORTS, by="kind"),),
)
