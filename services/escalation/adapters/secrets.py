"""Standard Webhooks secrets and signatures, by the `standardwebhooks` library (what receivers
verify with): `whsec_` + base64 of random bytes; `v1,<base64 HMAC-SHA256>` over
`{webhook-id}.{timestamp}.{body}`. During a rotation's overlap both the new and the previous secret
sign, space-separated, so a receiver holding either verifies."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

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


def signature(secrets_: list[str], webhook_id: str, at: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,...` per secret, space-separated."""
    payload = body.decode()
    return " ".join(Webhook(s).sign(webhook_id, at, payload) for s in secrets_)
