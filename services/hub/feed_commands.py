"""`safetyhub feed credentials create|list|revoke`: the city platform's NATS users, audited."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors

from services.common.audit import Actor, record, transaction
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.embedded.nats_auth import HUB_ACCOUNT, HUB_USER, hub_secret, running_port
from services.common.settings import HubConfig
from services.feed import credentials
from services.hub.registry import REGISTRY
from services.hub.runtime import database_url

_DEFAULT_PORT = 4222
_NO_HUB = "not created: no hub runs on this data dir; created when the feed service starts"


@dataclass(frozen=True, slots=True)
class Created:
    credential: credentials.NewCredential
    url: str  # with the city's user and secret
    reloaded: bool  # a running embedded server took the new user in
    external: bool  # the hub's NATS is an external server: the operator adds the user there
    durable: str  # what became of the city's durable consumer


def _store(data_dir: Path) -> Path:
    return data_dir / "nats"


def _server_address(config: HubConfig, data_dir: Path) -> tuple[str, str]:
    """Host and port the city connects to: the external server's, or the embedded one's."""
    if config.bus.url is not None:
        parts = urlsplit(config.bus.url.split(",")[0])
        return parts.hostname or "127.0.0.1", str(parts.port or _DEFAULT_PORT)
    port = running_port(_store(data_dir)) or config.bus.embedded_port
    # Without a fixed port the embedded server picks one at each start: say so in the URL.
    return "127.0.0.1", str(port) if port is not None else "PORT"


async def create(config: HubConfig, data_dir: Path, name: str) -> Created:
    credentials.check_name(name)
    actor = Actor.command()
    credential = await asyncio.to_thread(
        credentials.new_credential, name, now=datetime.now(UTC), by=actor.actor
    )
    external = config.bus.url is not None
    host, port = _server_address(config, data_dir)
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, REGISTRY.migrations(()))
            async with transaction(pool) as tx:
                detail = {
                    "stream": credentials.STREAM,
                    "durable": name,
                    "server": "external" if external else "embedded",
                }
                await record(tx, actor.entry("feed_credentials.created", target=name, detail=detail))
                # After the audit row, inside its transaction: a refused name rolls the row back.
                reloaded = await asyncio.to_thread(credentials.add, _store(data_dir), credential)
        finally:
            await pool.close()
    city_url = f"nats://{name}:{credential.secret}@{host}:{port}"
    durable = await _make_durable(data_dir, name) if reloaded else _NO_HUB
    if external:
        durable = "not created: create it on the external server (see its configuration block)"
    return Created(credential, city_url, reloaded, external, durable)


async def _make_durable(data_dir: Path, name: str) -> str:
    """The city cannot create consumers: the hub's user creates its durable on the running server."""
    store = _store(data_dir)
    port = running_port(store)
    if port is None:
        return _NO_HUB
    secret = await asyncio.to_thread(hub_secret, store)
    nc = await nats.connect(f"nats://{HUB_USER}:{secret}@127.0.0.1:{port}", allow_reconnect=False)
    try:
        made = await credentials.ensure_durable(nc.jetstream(timeout=5), name)
        return "created on FEED" if made else "exists on FEED (kept)"
    except nats.js.errors.NotFoundError:
        return "not yet: FEED does not exist (the feed service creates it and then the durables)"
    finally:
        with contextlib.suppress(nats.errors.Error):
            await nc.close()


async def revoke(config: HubConfig, data_dir: Path, name: str) -> bool:
    actor = Actor.command()
    async with database_url(data_dir, config) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await migrations.apply(pool, REGISTRY.migrations(()))
            async with transaction(pool) as tx:
                await record(tx, actor.entry("feed_credentials.revoked", target=name))
                return await asyncio.to_thread(
                    credentials.revoke, _store(data_dir), name, now=datetime.now(UTC), by=actor.actor
                )
        finally:
            await pool.close()


def show(data_dir: Path, *, include_revoked: bool) -> str:
    return credentials.format_users(credentials.feed_users(_store(data_dir), include_revoked=include_revoked))


def server_config(created: Created) -> str:
    """The `accounts` block for an external nats-server: the city in an account of its own."""
    hub_users = (
        "  # the users of the account that holds FEED (and every other stream of the hub) go here\n"
        '  users = [{user: "hub", password: $HUB_PASSWORD}]\n'
    )
    return (
        f"# Merge into the configuration of the nats-server that holds the FEED stream: the hub's\n"
        f"# account ({HUB_ACCOUNT} here; use the name of yours, with jetstream enabled) exports to\n"
        f"# the city's account only the services reading FEED needs. Set HUB_PASSWORD (or put your\n"
        f"# hub users in place of it), check it with nats-server -t -c FILE, then reload the server\n"
        f"# (nats-server --signal reload). The city's password is a bcrypt hash. Create the city's\n"
        f"# durable pull consumer {created.credential.name!r} on FEED with the hub's credentials\n"
        f"# (deliver all, ack explicit); the city cannot create consumers.\n"
        + credentials.external_config(created.credential.user, hub_users)
    )


def describe(created: Created) -> str:
    name = created.credential.name
    if created.external:
        where = "add the user below to the external NATS server (see its configuration block)"
    elif created.reloaded:
        where = "in force now: the running hub's NATS server reloaded its configuration"
    else:
        where = "in force from the hub's next start (no hub runs on this data dir)"
    lines = [
        f"feed credentials for {name}: shown once, only a bcrypt hash of the password is kept",
        f"  url           {created.url}",
        f"  user          {name}",
        f"  password      {created.credential.secret}",
        f"  stream        {credentials.STREAM}",
        f"  durable       {name} (a pull consumer on FEED the hub creates; the city resets it to replay):"
        f" {created.durable}",
        f"  api prefix    {credentials.API_PREFIX} (the client's JetStream API prefix)",
        f"  inbox prefix  {credentials.inbox_prefix(name)} (the client's inbox prefix; _INBOX is refused)",
        f"  status        {where}",
        f"  follow it     python scripts/city_consumer.py --url '{created.url}'",
    ]
    return "\n".join(lines)
