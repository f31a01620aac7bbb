"""API keys: created once and shown once, stored as a hash (verified in `verifier.py`).

A key reads `shk_<key id>_<secret>`. The key id finds the row; the secret is compared by hash in
constant time.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import asyncpg

from services.common.auth.principal import ROLES
from services.common.errors import SafetyhubError

PREFIX = "shk"


class KeyError_(SafetyhubError):
    """A key cannot be created as asked."""


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
) -> str:
    """Store a new key and return it; this is the only time the secret exists in clear."""
    if role not in ROLES:
        raise KeyError_(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not tenant:
        raise KeyError_("a key needs a tenant")
    if sites is not None and not list(sites):
        # An empty list must not silently mean "every site" (NULL in the table).
        raise KeyError_("a key limited to no sites could do nothing; omit --sites for all sites")
    if devices is not None and not list(devices):
        raise KeyError_("a key limited to no devices could do nothing; omit --devices for all devices")
    if devices is not None and role != "gateway":
        raise KeyError_("only a gateway key can be limited to devices: it is what devices post with")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")  # '_' separates the parts
    await conn.execute(
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
    return f"{PREFIX}_{key_id}_{secret}"
