"""API keys: created once and shown once, stored as a hash (verified in `verifier.py`).

A key reads `shk_<key id>_<secret>`. The key id finds the row; the secret is compared by hash in
constant time.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.common.audit import Actor, record, transaction
from services.common.auth.principal import ROLES
from services.common.errors import SafetyhubError
from services.common.logging import get_logger

PREFIX = "shk"
log = get_logger(__name__)


class KeyRequestError(SafetyhubError):
    """A key cannot be created or revoked as asked (unknown role, empty scope, no such key, ...)."""


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_key(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant: str,
    role: str,
    sites: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    description: str = "",
    actor: Actor | None = None,
) -> str:
    """Store a new key and return it; this is the only time the secret exists in clear.

    The audit row (`key.created`, by `actor`: the command's user when None) commits with the key.
    """
    if role not in ROLES:
        raise KeyRequestError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not tenant:
        raise KeyRequestError("a key needs a tenant")
    if sites is not None and not list(sites):
        # An empty list must not silently mean "every site" (NULL in the table).
        raise KeyRequestError("a key limited to no sites could do nothing; omit --sites for all sites")
    if devices is not None and not list(devices):
        raise KeyRequestError("a key limited to no devices could do nothing; omit --devices for all devices")
    if devices is not None and role != "gateway":
        raise KeyRequestError("only a gateway key can be limited to devices: it is what devices post with")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")  # '_' separates the parts
    async with transaction(conn) as tx:
        await tx.execute(
            "INSERT INTO api_keys (key_id, secret_hash, tenant, role, sites, devices, description)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key_id,
            _hash(secret),
            tenant,
            role,
            list(sites) if sites is not None else None,
            list(devices) if devices is not None else None,
            description,
        )
        await record(
            tx,
            (actor or Actor.command()).entry(
                "key.created",
                tenant=tenant,
                target=key_id,
                detail={"role": role, "sites": sites, "devices": devices, "description": description},
            ),
        )
    log.info("audit", action="key_created", key_id=key_id, tenant=tenant, role=role)
    return f"{PREFIX}_{key_id}_{secret}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known of a key apart from its secret, which is never kept."""

    key_id: str
    tenant: str
    role: str
    sites: tuple[str, ...] | None  # None: every site of the tenant
    devices: tuple[str, ...] | None  # None: every device of its sites
    description: str
    created_at: datetime
    revoked_at: datetime | None


_INFO_COLUMNS = "key_id, tenant, role, sites, devices, description, created_at, revoked_at"


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        tenant=row["tenant"],
        role=row["role"],
        sites=tuple(row["sites"]) if row["sites"] is not None else None,
        devices=tuple(row["devices"]) if row["devices"] is not None else None,
        description=row["description"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def list_keys(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant: str | None = None, include_revoked: bool = False
) -> list[KeyInfo]:
    """Keys in the order they were made, of one tenant or all; revoked ones only when asked."""
    rows = await conn.fetch(
        f"SELECT {_INFO_COLUMNS} FROM api_keys"
        " WHERE ($1::text IS NULL OR tenant = $1) AND ($2 OR revoked_at IS NULL)"
        " ORDER BY created_at, key_id",
        tenant,
        include_revoked,
    )
    return [_info(row) for row in rows]


async def revoke_key(
    conn: asyncpg.Connection | asyncpg.Pool, key_id: str, *, actor: Actor | None = None, reason: str = ""
) -> KeyInfo:
    """Mark a key revoked; verifiers refuse it once their cache of it expires.

    Raises KeyRequestError for an unknown key id and for a key already revoked (a second revocation
    would otherwise look like a first one that worked).
    """
    async with transaction(conn) as tx:
        row = await tx.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL"
            f" RETURNING {_INFO_COLUMNS}",
            key_id,
        )
        if row is not None:
            entry = (actor or Actor.command()).entry(
                "key.revoked",
                tenant=row["tenant"],
                target=key_id,
                reason=reason,
                detail={"role": row["role"]},
            )
            await record(tx, entry)
    if row is None:
        revoked_at = await conn.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", key_id)
        if revoked_at is None:
            raise KeyRequestError(f"no key {key_id!r}; `safetyhub keys list` shows the key ids")
        when = revoked_at.isoformat(timespec="seconds")
        raise KeyRequestError(f"key {key_id!r} was already revoked at {when}")
    info = _info(row)
    log.info("audit", action="key_revoked", key_id=key_id, tenant=info.tenant, role=info.role)
    return info
