"""What the `safetyhub` subcommands do, apart from argument parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors

from services.common.audit import Actor, record, transaction
from services.common.auth.hub_key import hub_key, issue_token
from services.common.auth.keys import KeyInfo, KeyRequestError, list_keys, revoke_key
from services.common.auth.keys import create_key as store_key
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.errors import ConfigError, EmbeddedServerError
from services.common.logging import get_logger
from services.common.redact import redact
from services.common.settings import HubConfig
from services.common.sites.registry import SiteRegistry
from services.feed import credentials
from services.hub.bootstrap import Endpoints, Hub, LoadedSites, load_sites
from services.hub.registry import REGISTRY, Registry
from services.hub.runtime import database_url, hub_endpoints, write_runtime_file
from services.hub.supervisor import Supervisor, WorkerPlan, free_port

log = get_logger(__name__)


async def serve(config: HubConfig, base: Path, data_dir: Path, *, config_path: Path | None = None) -> int:
    """`safetyhub up`: every service, embedded servers where none are configured, until a signal."""
    from services.hub.cli import install_stop_signals

    # Site files are checked before any server starts: a typo must not cost a database start-up.
    sites = await load_sites(config, base)
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with hub_endpoints(data_dir, config) as endpoints:
        if config.workers == 1:
            await _serve_in_process(
                config, base, data_dir, endpoints, stop, sites=sites, config_path=config_path
            )
        else:
            await _serve_workers(config, data_dir, endpoints, stop, config_path)
    return 0


async def _serve_in_process(
    config: HubConfig,
    base: Path,
    data_dir: Path,
    endpoints: Endpoints,
    stop: asyncio.Event,
    *,
    sites: LoadedSites,
    config_path: Path | None = None,
) -> None:
    hub = Hub(config, base, endpoints, sites=sites, config_file=config_path)
    try:
        await hub.start()
        _announce(data_dir, hub.http_url, endpoints)
        await _city_durables(config, data_dir, endpoints)
        await stop.wait()
        log.info("hub_stopping")
    finally:
        await hub.stop()


async def _serve_workers(
    config: HubConfig, data_dir: Path, endpoints: Endpoints, stop: asyncio.Event, config_path: Path | None
) -> None:
    host = config.http.host
    port = config.http.port or free_port(host)
    supervisor = Supervisor(WorkerPlan(config.workers, host, port, data_dir, config_path, endpoints))
    try:
        await supervisor.start()
        _announce(data_dir, supervisor.http_url, endpoints, workers=config.workers)
        await _city_durables(config, data_dir, endpoints)
        await supervisor.run_until(stop)
        log.info("hub_stopping")
    finally:
        await supervisor.stop()


async def _city_durables(config: HubConfig, data_dir: Path, endpoints: Endpoints) -> None:
    """Bring every city user of the embedded server to this release's grants, and create the
    FEED durable of each that has none.

    `feed credentials create` makes it at once when a hub runs; a user created while none ran
    gets it here, once the hub's streams (FEED among them) exist. A failure is logged, never fatal:
    the hub serves, and the city's consumer script names what is missing.
    """
    store = data_dir / "nats"
    if config.bus.url is not None:
        return
    if not await asyncio.to_thread(credentials.feed_users, store, include_revoked=False):
        return
    try:
        regranted = await asyncio.to_thread(credentials.regrant, store)
        if regranted:
            log.info("feed_city_grants_updated", users=regranted)
    except EmbeddedServerError as err:
        log.warning("feed_city_grants_failed", error=str(err))
    try:
        nc = await nats.connect(endpoints.nats_url, allow_reconnect=False)
    except (OSError, nats.errors.Error) as err:
        log.warning("feed_city_durables_failed", error=str(err))
        return
    try:
        created = await credentials.ensure_durables(nc.jetstream(), store)
        if created:
            log.info("feed_city_durables_created", users=created)
    except (nats.errors.Error, EmbeddedServerError) as err:
        log.warning("feed_city_durables_failed", error=str(err))
    finally:
        await nc.close()


def _announce(data_dir: Path, http_url: str, endpoints: Endpoints, *, workers: int = 1) -> None:
    write_runtime_file(data_dir, http_url=http_url, endpoints=endpoints)
    log.info(
        "hub_ready",
        http=http_url,
        nats=redact(endpoints.nats_url),
        postgres=redact(endpoints.database_url),
        data_dir=str(data_dir),
        workers=workers,
    )


async def run_service(
    config: HubConfig,
    base: Path,
    service: str,
    *,
    registry: Registry = REGISTRY,
    config_path: Path | None = None,
) -> int:
    """`safetyhub run <service>`: one service against the external servers of the config/env."""
    from services.hub.cli import install_stop_signals

    if config.bus.url is None or config.database.url is None:
        raise ConfigError(
            "environment",
            None,
            "SAFETYHUB_NATS_URL / SAFETYHUB_DATABASE_URL",
            "`run` needs external servers; set both (or bus.url and database.url)",
        )
    if service not in registry.names:
        raise ConfigError("command line", None, "service", f"unknown service {service!r}")
    stop = asyncio.Event()
    install_stop_signals(stop)
    hub = Hub(
        config,
        base,
        Endpoints(config.bus.url, config.database.url),
        services=(service,),
        service_registry=registry,
        config_file=config_path,
    )
    try:
        await hub.start()
        await stop.wait()
    finally:
        await hub.stop()
    return 0


async def migrate(
    config: HubConfig,
    data_dir: Path,
    services: Sequence[str] | None = None,
    *,
    registry: Registry = REGISTRY,
) -> int:
    """`safetyhub migrate [--service NAME ...]`: the kernel's migrations and the named services'
    (every service's when none is named)."""
    try:
        chosen = registry.select(services or None)
    except ValueError as err:
        raise ConfigError("command line", None, "--service", str(err)) from err
    wanted = await asyncio.to_thread(registry.migrations, chosen)
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            applied = await migrations.apply(pool, wanted)
        finally:
            await pool.close()
    print(
        f"{len(applied)} migrations applied"
        + "".join(f"\n  {m.component} {m.version:04d}_{m.name}" for m in applied)
    )
    return 0


def _kernel_migrations() -> list[migrations.Migration]:
    # The key store is the kernel's: key commands need its tables, not every service's.
    return REGISTRY.migrations(())


def check_key_scope(
    registry: SiteRegistry,
    *,
    tenant: str,
    sites: Sequence[str] | None,
    devices: Sequence[str] | None,
) -> None:
    """Refuse a key for a tenant, site or device the site files do not declare (KeyRequestError).

    A key for a misspelt tenant or device would be created and then be refused on every post;
    a key naming another tenant's site would be worse. The option at fault is named.
    """
    tenants = [t.id for t in registry.tenants]
    if tenant not in tenants:
        raise KeyRequestError(
            f"--tenant: no tenant {tenant!r} in the site files; known: {', '.join(tenants) or 'none'}"
        )
    own = [site.id for site in registry.sites_of(tenant)]
    for site in sites or ():
        owner = registry.tenant_of(site)
        if owner is None:
            raise KeyRequestError(f"--sites: no site {site!r}; sites of {tenant}: {', '.join(own) or 'none'}")
        if owner != tenant:
            raise KeyRequestError(f"--sites: site {site!r} belongs to tenant {owner!r}, not to {tenant!r}")
    scope = list(sites) if sites else own
    for device in devices or ():
        if not any(registry.device(site, device) is not None for site in scope):
            where = "the key's sites" if sites else f"the sites of {tenant}"
            known = ", ".join(scope) or "none"
            raise KeyRequestError(f"--devices: no device {device!r} at {where} ({known})")


async def create_key(
    config: HubConfig,
    base: Path,
    data_dir: Path,
    *,
    tenant: str,
    role: str,
    sites: Sequence[str] | None,
    devices: Sequence[str] | None,
    description: str,
) -> str:
    loaded = await load_sites(config, base)
    check_key_scope(loaded.registry, tenant=tenant, sites=sites, devices=devices)
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, _kernel_migrations())
            return await store_key(
                pool, tenant=tenant, role=role, sites=sites, devices=devices, description=description
            )
        finally:
            await pool.close()


async def issue_person_token(
    config: HubConfig,
    base: Path,
    data_dir: Path,
    *,
    user: str,
    tenant: str,
    roles: Sequence[str],
    sites: Sequence[str] | None,
    ttl_s: float,
    name: str | None,
) -> str:
    """`safetyhub tokens issue`: a person's token signed with the hub's own key, audited."""
    loaded = await load_sites(config, base)
    check_key_scope(loaded.registry, tenant=tenant, sites=sites, devices=None)
    if not config.auth.jwt.hub_tokens:
        raise KeyRequestError(
            "auth.jwt.hub_tokens is off: this hub trusts only its identity provider's tokens"
        )
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, _kernel_migrations())
            async with transaction(pool) as tx:
                key = await hub_key(tx)
                token = issue_token(
                    key, subject=user, tenant=tenant, roles=roles, sites=sites, name=name, ttl_s=ttl_s
                )
                detail = {"roles": list(roles), "sites": sites, "ttl_s": ttl_s, "name": name, "kid": key.kid}
                await record(
                    tx, Actor.command().entry("token.issued", tenant=tenant, target=user, detail=detail)
                )
            log.info("audit", action="token_issued", user=user, tenant=tenant, roles=list(roles), kid=key.kid)
            return token
        finally:
            await pool.close()


async def show_keys(config: HubConfig, data_dir: Path, *, tenant: str | None, include_revoked: bool) -> str:
    """`safetyhub keys list`: a table of the keys, never their secrets (only hashes exist)."""
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, _kernel_migrations())
            keys = await list_keys(pool, tenant=tenant, include_revoked=include_revoked)
        finally:
            await pool.close()
    return format_keys(keys)


async def revoke(config: HubConfig, data_dir: Path, key_id: str) -> KeyInfo:
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, _kernel_migrations())
            return await revoke_key(pool, key_id)
        finally:
            await pool.close()


_KEY_COLUMNS = ("KEY ID", "TENANT", "ROLE", "SITES", "DEVICES", "DESCRIPTION", "CREATED", "REVOKED")


def format_keys(keys: Sequence[KeyInfo]) -> str:
    """Aligned columns, one key a line, as `ps` or `kubectl get` print them."""
    if not keys:
        return "no keys"

    def when(moment: datetime | None) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"

    rows = [_KEY_COLUMNS] + [
        (
            key.key_id,
            key.tenant,
            key.role,
            ",".join(key.sites) if key.sites is not None else "all",
            ",".join(key.devices) if key.devices is not None else "all",
            key.description or "-",
            when(key.created_at),
            when(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_KEY_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
