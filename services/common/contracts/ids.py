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
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of base-32 digits, by its 10-bit value: a ULID's 26 digits are 13 lookups.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def new_id() -> str:
    return str(ULID())


def derived_id(time_ms: int, *identity: str) -> str:
    """A ULID for time `time_ms` whose randomness is a digest of `identity`."""
    digest = hashlib.blake2b("\x1f".join(identity).encode(), digest_size=10).digest()
    stamp = min(max(time_ms, 0), _MAX_ULID_MS).to_bytes(6, "big")
    return ulid_text(stamp + digest)


def ulid_text(value: bytes) -> str:
    """The 26 characters of the ULID of 16 bytes, as `str(ULID.from_bytes(value))` writes them:
    the 128-bit number in base 32, Crockford's digits, the first carrying only two bits.

    A derived id is written for every message ingest publishes: python-ulid's object and its
    `__str__` cost about four times these 13 lookups."""
    # The time part (48 bits, 10 digits) and the two halves of the random part (40 bits, 8
    # digits each): numbers small enough for Python's cheap arithmetic, unrolled.
    t = int.from_bytes(value[:6], "big")
    a = int.from_bytes(value[6:11], "big")
    b = int.from_bytes(value[11:16], "big")
    p = _PAIRS
    return "".join(
        (
            p[t >> 40],
            p[t >> 30 & 1023],
            p[t >> 20 & 1023],
            p[t >> 10 & 1023],
            p[t & 1023],
            p[a >> 30],
            p[a >> 20 & 1023],
            p[a >> 10 & 1023],
            p[a & 1023],
            p[b >> 30],
            p[b >> 20 & 1023],
            p[b >> 10 & 1023],
            p[b & 1023],
        )
    )
