"""Message ids: ULIDs, and deterministic ULIDs for observations posted without an id.

A gateway that retries a POST after a timeout must not create a second observation. When the
client sends no id, the id is derived from what identifies the reading (tenant, site, device, kind,
time, value): a ULID whose time part is the observation time and whose random part is a BLAKE2b
digest. The same reading posted twice gets the same id, so the stream and the store deduplicate
it exactly as they do client-chosen ids, and ids still sort by time.
"""

from __future__ import annotations

import hashlib

from ulid import ULID

_MAX_ULID_MS = (1 << 48) - 1


def new_id() -> str:
    return str(ULID())


def derived_id(time_ms: int, *identity: str) -> str:
    """A ULID for time `time_ms` whose randomness is a digest of `identity`."""
    digest = hashlib.blake2b("\x1f".join(identity).encode(), digest_size=10).digest()
    stamp = min(max(time_ms, 0), _MAX_ULID_MS).to_bytes(6, "big")
    return str(ULID.from_bytes(stamp + digest))
