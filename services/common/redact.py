"""URLs with their password blanked, for logs, the live view and error messages."""

from __future__ import annotations


def redact(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (nats:// likewise)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
