"""`safetyhub feed credentials create|list|revoke`: the city platform's NATS users, audited."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from services.common.audit import Actor, record, transaction
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.embedded.nats_auth import running_port, user_entry
from services.common.settings import HubConfig
from services.feed import credentials
from services.hub.registry import REGISTRY
from services.hub.runtime import database_url

_DEFAULT_PORT = 4222


@dataclass(frozen=True, slots=True)
class Created:
    credential: credentials.NewCredential
    url: str  # with the city's user and secret
    reloaded: bool  # a running embedded server took the new user in
    external: bool  # the hub's NATS is an external server: the operator adds the user there


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
    return Created(credential, city_url, reloaded, external)


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
    """The `authorization` block for an external nats-server: merge the entry into its users."""
    return (
        "# Add this user to the `users` list of the nats-server configuration that holds the FEED\n"
        "# stream (in an `accounts` setup: to the users of the account that holds it), then reload\n"
        "# the server (nats-server --signal reload). The password is a bcrypt hash.\n"
        "authorization {\n  users = [\n" + user_entry(created.credential.user, indent="    ") + "\n  ]\n}"
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
        f"  durable       {name} (a pull consumer; create it with this name)",
        f"  inbox prefix  {credentials.inbox_prefix(name)} (the client's inbox prefix; _INBOX is refused)",
        f"  status        {where}",
        f"  follow it     python scripts/city_consumer.py --url '{created.url}'",
    ]
    return "\n".join(lines)
