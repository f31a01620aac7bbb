"""The hub's own signing key for people's tokens, and `tokens issue`'s signing.

For the demo and small sites without an identity provider: `safetyhub tokens issue` signs a token
with the hub's key (HS256, made on first use and kept in PostgreSQL: see the migration for why),
and every hub process of the deployment trusts it beside the configured identity provider.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import jwt

from services.common.auth.principal import PERSON_ROLES
from services.common.errors import SafetyhubError

# `iss` and `aud` of the hub's tokens: a token of the identity provider never verifies as the
# hub's (its kid, issuer and audience differ) and the reverse.
HUB_ISSUER = "safetyhub"
HUB_AUDIENCE = "safetyhub"
HUB_ALGORITHM = "HS256"
_KID_PREFIX = "safetyhub-"


class TokenRequestError(SafetyhubError):
    """A token cannot be issued as asked (unknown role, empty scope, bad lifetime)."""


@dataclass(frozen=True, slots=True, repr=False)
class HubKey:
    kid: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"HubKey(kid={self.kid!r})"


async def hub_key(conn: asyncpg.Connection | asyncpg.Pool) -> HubKey:
    """The current key, made now if there is none (concurrent callers all get the same one)."""
    kid = _KID_PREFIX + secrets.token_hex(4)
    await conn.execute(
        "INSERT INTO hub_signing_keys (kid, secret) VALUES ($1, $2)"
        " ON CONFLICT ((retired_at IS NULL)) WHERE retired_at IS NULL DO NOTHING",
        kid,
        secrets.token_bytes(32),
    )
    row = await conn.fetchrow("SELECT kid, secret FROM hub_signing_keys WHERE retired_at IS NULL")
    assert row is not None  # inserted above unless another was current
    return HubKey(row["kid"], bytes(row["secret"]))


def issue_token(
    key: HubKey,
    *,
    subject: str,
    tenant: str,
    roles: Sequence[str],
    sites: Sequence[str] | None = None,
    name: str | None = None,
    ttl_s: float = 8 * 3600.0,
    now: float | None = None,
) -> str:
    """A signed token for one person; `sites` None: every site of the tenant."""
    unknown = [r for r in roles if r not in PERSON_ROLES]
    if unknown:
        raise TokenRequestError(
            f"--roles: unknown role {unknown[0]!r}; a person's roles: {', '.join(PERSON_ROLES)}"
        )
    if not roles:
        raise TokenRequestError("--roles: a token needs at least one role")
    if not subject:
        raise TokenRequestError("--user: a token needs the person's user name")
    if sites is not None and not list(sites):
        raise TokenRequestError(
            "--sites: a token limited to no sites could do nothing; omit it for all sites"
        )
    if not 0 < ttl_s <= 366 * 86400:
        raise TokenRequestError("--ttl: between a second and a year")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": HUB_ISSUER,
        "aud": HUB_AUDIENCE,
        "sub": subject,
        "tenant": tenant,
        "roles": list(dict.fromkeys(roles)),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
        "jti": secrets.token_hex(8),
    }
    if name:
        claims["name"] = name
    if sites is not None:
        claims["sites"] = list(sites)
    return jwt.encode(claims, key.secret, algorithm=HUB_ALGORITHM, headers={"kid": key.kid})


def parse_ttl(text: str) -> float:
    """'8h', '30m', '2d', '90s' or plain seconds, as `--ttl` takes them."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    factor = units.get(value[-1:]) if value else None
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise TokenRequestError(f"--ttl: {text!r} is not a duration like 8h, 30m, 2d or 3600") from None
    if not 0 < seconds <= 366 * 86400:
        raise TokenRequestError("--ttl: between a second and a year")
    return seconds


async def hub_key_of(conn: asyncpg.Connection | asyncpg.Pool, kid: str) -> HubKey | None:
    """The current key if its id is `kid` (a token naming another kid was not signed by it)."""
    row = await conn.fetchrow(
        "SELECT kid, secret FROM hub_signing_keys WHERE kid = $1 AND retired_at IS NULL", kid
    )
    return None if row is None else HubKey(row["kid"], bytes(row["secret"]))
