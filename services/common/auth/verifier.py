"""Verifying API keys: a cache by key id in front of PostgreSQL, which is asked with a time bound.

A key reads `shk_<key id>_<secret>`. The cache holds, per key id, the stored secret hash and the
key's principal; a presented secret is compared with that hash in constant time, so a known key id
with a wrong secret never passes.

- Fresh (checked within `cache_ttl`): answered from the cache, no database call.
- Older: PostgreSQL is asked again, one query per key id at a time, bounded by `check_timeout`
  (pool acquire and query together). Its answer counts: a revoked key is refused from then on.
- PostgreSQL not answering (frozen, down): a known key is served from the cache for up to
  `max_stale` since its last check, and a key never seen raises `UnavailableError` (503 with
  Retry-After). After a failed check the database is left alone for `retry_after` and then tried
  with one check at a time, so an outage costs each request no more than one `check_timeout`.
- Unknown key ids are remembered for `unknown_ttl`, so repeating a wrong token costs no query;
  tokens not of the key format never reach the database.

A revoked key stops working at most `cache_ttl + check_timeout + retry_after` (33 s by default)
after the later of its revocation and PostgreSQL being reachable.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import asyncpg
from cachetools import TTLCache
from prometheus_client import Counter

from services.common.auth.keys import PREFIX
from services.common.auth.keys import _hash as hash_secret
from services.common.auth.principal import Principal, Role
from services.common.db.pool import TRANSIENT_DB_ERRORS, abandon
from services.common.errors import UnavailableError
from services.common.logging import get_logger

log = get_logger(__name__)

# What `create_key` makes: 6 random bytes in hex. Anything else is refused without a query.
_KEY_ID = re.compile(r"[0-9a-f]{12}")

KEY_CHECKS = Counter(
    "safetyhub_auth_key_checks",
    "API keys presented, by how they were answered: cache (a fresh known key), cache_unknown (an "
    "id found unknown moments ago), malformed, database (PostgreSQL answered), stale (a known key "
    "served while PostgreSQL does not answer), unavailable (no answer and nothing cached: 503)",
    ["result"],
)


@dataclass(frozen=True, slots=True)
class KeyCachePolicy:
    cache_ttl: float = 30.0  # a checked key is trusted this long without asking PostgreSQL
    check_timeout: float = 1.0  # one check: pool acquire and query
    max_stale: float = 24 * 3600.0  # a known key is served this long past its last check at most
    unknown_ttl: float = 5.0  # an unknown key id is refused without a query this long
    retry_after: float = 2.0  # after a failed check, PostgreSQL is not asked for this long
    max_keys: int = 10_000  # of each cache, least recently used dropped first
    warn_every: float = 10.0  # at most one warning per this long while keys are served stale


# Read at construction, so a test can run a whole hub with short times.
DEFAULT_POLICY = KeyCachePolicy()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    secret_hash: bytes
    principal: Principal


# Finds a key that is not revoked by its id, or None; raises a TRANSIENT_DB_ERRORS when it cannot.
KeyLookup = Callable[[str], Awaitable[KeyRecord | None]]


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a token in the key format, or None."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != PREFIX or not _KEY_ID.fullmatch(parts[1]) or not parts[2]:
        return None
    return parts[1], parts[2]


def postgres_lookup(pool: asyncpg.Pool) -> KeyLookup:
    async def lookup(key_id: str) -> KeyRecord | None:
        row = await pool.fetchrow(
            "SELECT secret_hash, tenant, role, sites, devices FROM api_keys"
            " WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
        )
        if row is None:
            return None
        role: Role = row["role"]
        sites = frozenset(row["sites"]) if row["sites"] is not None else None
        devices = frozenset(row["devices"]) if row["devices"] is not None else None
        principal = Principal(key_id=key_id, tenant=row["tenant"], role=role, sites=sites, devices=devices)
        return KeyRecord(bytes(row["secret_hash"]), principal)

    return lookup


@dataclass(frozen=True, slots=True)
class _Known:
    record: KeyRecord
    checked: float  # when PostgreSQL last confirmed the key (the verifier's clock)


@dataclass(frozen=True, slots=True)
class _Check:
    task: asyncio.Future[KeyRecord | None]
    deadline: float  # event loop time: the bound is real waiting whatever clock the cache uses


class _Unreachable(Exception):
    pass


class KeyVerifier:
    """Verifies presented keys; one per process (each worker keeps its own cache)."""

    def __init__(
        self,
        source: asyncpg.Pool | KeyLookup,
        policy: KeyCachePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup: KeyLookup = postgres_lookup(source) if isinstance(source, asyncpg.Pool) else source
        self._policy = policy = policy or DEFAULT_POLICY
        self._clock = clock
        # Kept max_stale since the last confirmation; fresh while younger than cache_ttl.
        self._known: TTLCache[str, _Known] = TTLCache(policy.max_keys, policy.max_stale, timer=clock)
        self._unknown: TTLCache[str, bool] = TTLCache(policy.max_keys, policy.unknown_ttl, timer=clock)
        self._checks: dict[str, _Check] = {}
        self._down_until: float | None = None  # set while PostgreSQL is deemed unreachable
        self._last_warning: float | None = None
        self._since_warning = {"stale": 0, "unavailable": 0}

    async def verify(self, token: str) -> Principal | None:
        """The key's principal; None if unknown, revoked or wrong; UnavailableError if uncheckable."""
        parts = split_token(token)
        if parts is None:
            KEY_CHECKS.labels("malformed").inc()
            return None
        key_id, secret = parts
        known = self._known.get(key_id)
        if known is not None and self._clock() - known.checked < self._policy.cache_ttl:
            KEY_CHECKS.labels("cache").inc()
            return _match(known.record, secret)
        if known is None and key_id in self._unknown:
            KEY_CHECKS.labels("cache_unknown").inc()
            return None
        try:
            record = await self._check(key_id)
        except _Unreachable as err:
            return self._without_database(key_id, secret, str(err))
        KEY_CHECKS.labels("database").inc()
        if record is None:
            self._known.pop(key_id, None)
            self._unknown[key_id] = True
            return None
        self._known[key_id] = _Known(record, self._clock())
        return _match(record, secret)

    def _without_database(self, key_id: str, secret: str, reason: str) -> Principal | None:
        # Looked up again: the entry may have been dropped (max_stale) while the check ran.
        known = self._known.get(key_id)
        result = "stale" if known is not None else "unavailable"
        KEY_CHECKS.labels(result).inc()
        self._warn(result, reason)
        if known is None:
            raise UnavailableError("cannot check the API key: PostgreSQL is unreachable")
        return _match(known.record, secret)

    async def _check(self, key_id: str) -> KeyRecord | None:
        loop = asyncio.get_running_loop()
        check = self._checks.get(key_id)
        if check is None:
            if self._down_until is not None:
                if self._clock() < self._down_until:
                    raise _Unreachable("PostgreSQL did not answer a moment ago")
                # This check probes; the others keep using the cache until it has answered.
                self._down_until = self._clock() + self._policy.retry_after
            check = _Check(
                asyncio.ensure_future(self._lookup(key_id)), loop.time() + self._policy.check_timeout
            )
            self._checks[key_id] = check
            check.task.add_done_callback(partial(self._ended, key_id, check))
        remaining = check.deadline - loop.time()
        if remaining > 0 and not check.task.done():
            await asyncio.wait({check.task}, timeout=remaining)
        if not check.task.done():
            # Given up on, not awaited: against a frozen server its cancellation waits for the thaw.
            if self._forget(key_id, check):
                abandon(check.task)
            self._mark_down()
            raise _Unreachable(f"no answer within {self._policy.check_timeout:g} s")
        if check.task.cancelled():
            raise _Unreachable("the check was given up")
        error = check.task.exception()
        if isinstance(error, TRANSIENT_DB_ERRORS):
            self._mark_down()
            raise _Unreachable(f"{type(error).__name__}: {error}") from error
        if error is not None:
            raise error
        self._down_until = None
        return check.task.result()

    def _ended(self, key_id: str, check: _Check, task: asyncio.Future[KeyRecord | None]) -> None:
        self._forget(key_id, check)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone (clients that hung up)

    def _forget(self, key_id: str, check: _Check) -> bool:
        if self._checks.get(key_id) is check:
            del self._checks[key_id]
            return True
        return False

    def _mark_down(self) -> None:
        self._down_until = self._clock() + self._policy.retry_after

    def _warn(self, result: str, reason: str) -> None:
        self._since_warning[result] += 1
        now = self._clock()
        if self._last_warning is not None and now - self._last_warning < self._policy.warn_every:
            return
        self._last_warning = now
        log.warning(
            "api_keys_unverifiable",
            reason=reason,
            served_from_cache=self._since_warning["stale"],
            refused_unavailable=self._since_warning["unavailable"],
        )
        self._since_warning = {"stale": 0, "unavailable": 0}


def _match(record: KeyRecord, secret: str) -> Principal | None:
    return record.principal if hmac.compare_digest(record.secret_hash, hash_secret(secret)) else None
