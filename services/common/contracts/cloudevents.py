"""CloudEvents 1.0 binary mode on NATS: attributes as `ce-*` headers, `Nats-Msg-Id` = id.

Header values are percent-encoded outside U+0021..U+007E as the binding asks; the values safetyhub
produces (ULIDs, slugs, RFC 3339 times) never need it, so the common case costs one check.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, unquote

SPEC_VERSION = "1.0"
MSG_ID = "Nats-Msg-Id"


@lru_cache(maxsize=1024)
def _encode(value: str) -> str:
    # Cached: a source is the same for every message of a request, and this runs per message.
    if value.isascii() and value.isprintable() and " " not in value and '"' not in value and "%" not in value:
        return value
    return quote(value, safe="!#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def ce_headers(*, id: str, type: str, source: str, time: str) -> dict[str, str]:
    """Headers of one CloudEvent in binary mode, plus the JetStream dedup id.

    `datacontenttype` is left out on purpose: every safetyhub type (`org.safetyhub.*.vN`) is a
    protobuf message of proto/safetyhub, so the type names the encoding, and each header costs
    every publisher and every consumer a parse per message.
    """
    return {
        MSG_ID: id,
        "ce-specversion": SPEC_VERSION,
        "ce-id": id,
        "ce-type": type,
        "ce-source": _encode(source),
        "ce-time": time,
    }


def ce_attributes(headers: dict[str, str] | None) -> dict[str, str]:
    """The CloudEvents attributes carried by a message's headers (decoded)."""
    if not headers:
        return {}
    return {k[3:]: unquote(v) for k, v in headers.items() if k.lower().startswith("ce-")}
