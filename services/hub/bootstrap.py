"""One process of the hub: connections, migrations, streams, the services asked for, one HTTP app.

`safetyhub up` builds it with every service of the registry; `safetyhub run <service>` with one.
The hub knows no service: it starts the kernel (pool, the running services' migrations, NATS,
their streams), then each service in registry order, and stops them in reverse. Shutdown runs in
stages so nothing accepted is lost: stop HTTP intake (open streams end, in-flight requests finish,
so every 202 was acknowledged by JetStream), stop the services (consumers commit and ack the batch
in hand), drain NATS, close the pool; each stage within a bound, so a stuck server cannot hold it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web
from nats.aio.client import Client as NATS

from services.common.audit.api import AuditApi
from services.common.auth.hub_key import hub_key
from services.common.auth.tokens import TokenVerifier
from services.common.auth.verifier import KeyVerifier
from services.common.bus.connection import connect_bus
from services.common.bus.streams import ensure_streams
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.errors import ConfigError
from services.common.http.long_lived import install_long_lived
from services.common.http.middleware import (
    CREDENTIAL_PREFIXES,
    MAX_BODY_BYTES,
    auth_middleware,
    problem_middleware,
)
from services.common.http.ops import READINESS_BOUND_S, ReadinessCheck, add_ops_routes
from services.common.http.server import GuardedSite, runner_options
from services.common.kernel import ServiceContext, ServiceInstance
from services.common.lifecycle import SHUTDOWN_BOUNDS, Stage, drain_bus, run_stages
from services.common.logging import get_logger
from services.common.settings import HubConfig, site_files, site_patterns
from services.common.sites.api import SitesApi
from services.common.sites.registry import SiteRegistry
from services.common.sites.reload import SiteReloader
from services.common.watch import fingerprint
from services.hub.apidocs import add_api_docs
from services.hub.registry import REGISTRY, Registry

log = get_logger(__name__)

# aiohttp's own default, for a process whose services read no large body.
_DEFAULT_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadedSites:
    registry: SiteRegistry
    # Of the files as they were before reading: a change made meanwhile is seen as one later.
    fingerprint: str


async def load_sites(config: HubConfig, base: Path) -> LoadedSites:
    """The site files' registry; raises ConfigError when they cannot be read or hold no site.

    A hub with no site accepts nothing, so when the configured paths find no site file (a hub
    started from another directory, a typo in `sites:`) start-up stops and names where it looked.
    Only an explicit `sites: []` runs a hub with no sites.
    """
    files = site_files(config, base)
    if config.sites and not files:
        raise ConfigError("sites", None, "", f"no site file found at {_looked_at(config, base)}")
    seen = await asyncio.to_thread(fingerprint, files)
    registry = await asyncio.to_thread(SiteRegistry.load, files)
    if config.sites and not registry.sites:
        raise ConfigError(
            "sites",
            None,
            "",
            f"the site files {', '.join(map(str, files))} declare no site; they were found at"
            f" {_looked_at(config, base)}",
        )
    if not registry.sites:
        log.warning("no_sites_configured", hint="`sites: []` in the config: nothing can be posted")
    log.info("sites_loaded", files=[str(f) for f in files], sites=len(registry.sites))
    return LoadedSites(registry, seen)


def _looked_at(config: HubConfig, base: Path) -> str:
    patterns = ", ".join(str(p.absolute()) for p in site_patterns(config, base))
    return (
        f"{patterns} (relative paths count from the config file's directory, or without --config"
        " from the working directory). Run from the safetyhub checkout, or pass --config FILE whose"
        " `sites:` names the site files; `sites: []` runs a hub with no sites"
    )


@dataclass(frozen=True, slots=True)
class Endpoints:
    nats_url: str
    database_url: str


class Hub:
    """The kernel (pool, NATS, streams, HTTP) and the services asked for, in registry order."""

    def __init__(
        self,
        config: HubConfig,
        base: Path,
        endpoints: Endpoints,
        services: Iterable[str] | None = None,
        *,
        service_registry: Registry = REGISTRY,
        reuse_port: bool = False,
        sites: LoadedSites | None = None,
        config_file: Path | None = None,
    ):
        self._catalog = service_registry
        self._services = service_registry.select(services)  # ValueError for an unknown name
        self.config = config
        self._base = base
        self._config_file = config_file
        self._endpoints = endpoints
        self._reuse_port = reuse_port
        self._sites = sites
        self._registry = sites.registry if sites is not None else None
        self._nc: NATS | None = None
        self._pool: asyncpg.Pool | None = None
        self._running: list[ServiceInstance] = []
        self._runner: web.AppRunner | None = None
        self._reloader: SiteReloader | None = None
        self.http_url = ""

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._services)

    @property
    def registry(self) -> SiteRegistry:
        if self._registry is None:
            raise RuntimeError("hub not started")
        return self._registry

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("hub not started")
        return self._pool

    async def start(self) -> None:
        # Configuration first: a bad site file stops start-up before anything is touched.
        if self._sites is None:
            self._sites = await load_sites(self.config, self._base)
            self._registry = self._sites.registry

        # The kernel's and the running services' migrations, read once: readiness checks these.
        expected = await asyncio.to_thread(self._catalog.migrations, self._services)
        self._pool = await create_pool(
            self._endpoints.database_url,
            min_size=self.config.database.pool_min,
            max_size=self.config.database.pool_max,
        )
        await migrations.apply(self._pool, expected)
        self._nc = await connect_bus(self._endpoints.nats_url, name="safetyhub")
        js = self._nc.jetstream()
        await ensure_streams(js, self._catalog.streams(self.config, self._services))

        context = ServiceContext(
            self.config, self._pool, self._nc, js, lambda: self.registry, self._base, self._config_file
        )
        instances = [service.create(context) for service in self._services]
        tokens = await self._token_verifier(self._pool)
        app = self._build_app(self._pool, instances, expected, tokens)
        for instance in instances:
            await instance.start()
            self._running.append(instance)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_BOUNDS.http_drain,
            **runner_options(self.config.http),
        )
        await self._runner.setup()
        site = GuardedSite(self._runner, self.config.http, reuse_port=self._reuse_port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.http_url = f"http://{self.config.http.host}:{port}"
        if self.config.sites_reload_s > 0:
            self._reloader = SiteReloader(
                lambda: site_files(self.config, self._base),
                self._use_registry,
                interval=self.config.sites_reload_s,
                loaded=self._sites.fingerprint,
            )
            self._reloader.start()
        log.info("hub_started", services=list(self.services), http=self.http_url)

    def _use_registry(self, registry: SiteRegistry) -> None:
        # Requests read `self.registry` once each, so a request sees one registry throughout.
        self._registry = registry

    async def reload_sites(self) -> bool:
        """Check the site files now (as the reloader does every `sites_reload_s`)."""
        if self._reloader is None:
            raise RuntimeError("site reloading is off or the hub is not started")
        return await self._reloader.check()

    async def _token_verifier(self, pool: asyncpg.Pool) -> TokenVerifier:
        """People's tokens: the hub's own key (made on first use) and the configured provider."""
        jwt_config = self.config.auth.jwt
        own = await hub_key(pool) if jwt_config.hub_tokens else None
        # In a thread: it reads the configured secret or public key file.
        return await asyncio.to_thread(
            functools.partial(
                TokenVerifier, jwt_config, sites=lambda: self.registry, hub_key=own, base=self._base
            )
        )

    def _build_app(
        self,
        pool: asyncpg.Pool,
        instances: Sequence[ServiceInstance],
        expected: list[migrations.Migration],
        tokens: TokenVerifier,
    ) -> web.Application:
        verifier = KeyVerifier(pool)
        max_body = max((i.max_body_bytes for i in instances), default=0) or _DEFAULT_MAX_BODY
        public = self._catalog.public_paths(self._services)
        # A service's public prefix is public because the path carries its own credential.
        credentials = self._catalog.public_prefixes(self._services)
        prefixes = ("/docs/", *credentials)
        app = web.Application(
            client_max_size=max_body,
            middlewares=[
                problem_middleware,
                auth_middleware(verifier, public_paths=public, public_prefixes=prefixes, tokens=tokens),
            ],
        )
        app[MAX_BODY_BYTES] = max_body
        app[CREDENTIAL_PREFIXES] = credentials
        install_long_lived(app)  # streams end when shutdown starts, not after the HTTP drain
        checks = self._readiness_checks(expected)
        peers: dict[str, ReadinessCheck] = {}
        for service, instance in zip(self._services, instances, strict=True):
            for name, check in instance.readiness_checks().items():
                checks[f"{service.name}.{name}"] = check
            for name, check in instance.peer_checks().items():
                peers[f"{service.name}.{name}"] = check
        add_ops_routes(app, checks, peers=peers)
        add_api_docs(app)
        SitesApi(lambda: self.registry).add_routes(app)  # the registry object is swapped on reload
        AuditApi(pool).add_routes(app)  # every part writes the trail; any process serves it
        for instance in instances:
            instance.add_routes(app)
        return app

    def _readiness_checks(self, expected: list[migrations.Migration]) -> dict[str, ReadinessCheck]:
        # Each check bounds its own waits too, so a run /readyz stopped waiting for (a frozen
        # server) ends soon after instead of holding a connection. `expected` holds the kernel's
        # and the running services' migrations, read once at start: another service's pending
        # migrations are that service's business.
        bound = READINESS_BOUND_S

        async def nats_ready() -> str | None:
            nc = self._nc
            if nc is None or not nc.is_connected:
                return "not connected"
            # A round trip through JetStream: a frozen server leaves the connection "up" for minutes.
            try:
                await nc.jetstream(timeout=bound).account_info()
            except TimeoutError:
                return f"no answer within {bound:g} s"
            return None

        async def postgres_ready() -> str | None:
            if self._pool is None:
                return "no pool"
            try:
                async with asyncio.timeout(bound), self._pool.acquire(timeout=bound) as conn:
                    missing = await migrations.pending(conn, expected)
            except TimeoutError:
                return f"no answer within {bound:g} s"
            return None if not missing else f"{len(missing)} migrations not applied"

        return {"nats": nats_ready, "postgres": postgres_ready}

    async def stop(self) -> None:
        """Stop in stages, each within its bound (services.common.lifecycle); at most
        `SHUTDOWN_BOUNDS.total` seconds whatever the servers do."""
        bounds = SHUTDOWN_BOUNDS
        await run_stages(
            [
                # 1. stop intake: streams end at once, requests in flight finish (their publishes
                # are acknowledged or fail), so every 202 was acknowledged by JetStream.
                Stage("intake", bounds.intake, self._stop_intake),
                # 2. consumers finish and commit the batch in hand.
                Stage("consumers", bounds.consumers, self._stop_consumers),
                # 3. the bus: nothing is buffered client-side (pending_size=0); acks and
                # subscriptions drain.
                Stage("bus", bounds.bus, self._close_bus),
                # 4. the database: a pool that cannot say goodbye to its server drops its connections.
                Stage("database", bounds.database, self._close_pool, fallback=self._terminate_pool),
            ]
        )
        log.info("hub_stopped")

    async def _stop_intake(self) -> None:
        if self._reloader is not None:
            await self._reloader.stop()
        if self._runner is not None:
            await self._runner.cleanup()  # long-lived responses are closed by its on_shutdown

    async def _stop_consumers(self) -> None:
        # The services, in reverse order: consumers finish and commit the batch in hand,
        # publishers let go of their acknowledgement subscriptions.
        while self._running:
            await self._running.pop().stop()

    async def _close_bus(self) -> None:
        if self._nc is not None:
            await drain_bus(self._nc)

    async def _close_pool(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def _terminate_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
