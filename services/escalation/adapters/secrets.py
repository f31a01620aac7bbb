"""Standard Webhooks secrets and signatures, as the `standardwebhooks` library (what receivers
verify with) makes them: `whsec_` + base64 of random bytes; `v1,<base64 HMAC-SHA256>` over
`{webhook-id}.{timestamp}.{body}`. During a rotation's overlap both the new and the previous secret
sign, space-separated, so a receiver holding either verifies.

Signing is on every attempt's path, so it is HMAC-SHA256 by `hmac` with each secret's key decoded
once (the same bytes `standardwebhooks` signs, which the tests check against it)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from math import floor

PREFIX = "whsec_"
# Standard Webhooks: 24 to 64 random bytes.
MIN_BYTES, MAX_BYTES = 24, 64
NEW_SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(NEW_SECRET_BYTES)).decode()


def secret_problem(secret: str) -> str | None:
    """Why `secret` is not a Standard Webhooks secret; None when it is one."""
    if not secret.startswith(PREFIX):
        return f"must start with '{PREFIX}' followed by base64"
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return f"'{PREFIX}' must be followed by base64"
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        return f"the key must be {MIN_BYTES} to {MAX_BYTES} bytes, not {len(key)}"
    return None


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    # As `standardwebhooks` reads it: the prefix off, padding added where it was left out.
    return base64.b64decode(secret.removeprefix(PREFIX) + "==")


def signature(secrets_: list[str], webhook_id: str, at: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,...` per secret, space-separated."""
    signed = b"%s.%d." % (webhook_id.encode(), floor(at.replace(tzinfo=UTC).timestamp())) + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(_key(s), signed, hashlib.sha256)).decode() for s in secrets_
    )
