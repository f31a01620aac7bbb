"""The key cache's policy: what is asked of the database, when, and what a request gets meanwhile.

The lookup is a fake here: it is the cache policy under test. Against a real PostgreSQL, frozen and
killed, see tests/integration/test_database_outage.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.common.auth.keys import _hash
from services.common.auth.principal import Principal
from services.common.auth.verifier import KeyCachePolicy, KeyRecord, KeyVerifier
from services.common.db.pool import bounded
from services.common.errors import UnavailableError

TTL = 30.0
TIMEOUT = 0.2
POLICY = KeyCachePolicy(cache_ttl=TTL, check_timeout=TIMEOUT, unknown_ttl=5.0, retry_after=2.0)
KEY_A = "aaaaaaaaaaaa"
KEY_B = "bbbbbbbbbbbb"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeKeys:
    """Stands in for the api_keys table: answers, hangs like a frozen server, or fails like a dead one."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}
        self.calls: list[str] = []
        self.mode = "answer"
        self.cancelled = 0
        self.thaw = asyncio.Event()

    def add(self, key_id: str, secret: str, tenant: str = "acme") -> str:
        principal = Principal(key_id=key_id, tenant=tenant, role="gateway", sites=None)
        self.records[key_id] = KeyRecord(_hash(secret), principal)
        return f"shk_{key_id}_{secret}"

    async def __call__(self, key_id: str) -> KeyRecord | None:
        self.calls.append(key_id)
        if self.mode == "fail":
            raise ConnectionRefusedError("connection refused")
        if self.mode == "hang":
            try:
                await self.thaw.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return self.records.get(key_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def verifier(keys: FakeKeys, clock: FakeClock) -> KeyVerifier:
    return KeyVerifier(keys, POLICY, clock=clock)


def checks(result: str) -> float:
    return REGISTRY.get_sample_value("safetyhub_auth_key_checks_total", {"result": result}) or 0.0


async def timed(verifier: KeyVerifier, token: str) -> tuple[Principal | None, float]:
    started = time.monotonic()
    principal = await verifier.verify(token)
    return principal, time.monotonic() - started


async def test_a_fresh_key_is_answered_from_the_cache(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = keys.add(KEY_A, "s3cret")
    first = await verifier.verify(token)
    hits = checks("cache")

    clock.now += TTL - 1
    assert await verifier.verify(token) == first
    assert first is not None and first.tenant == "acme"
    assert keys.calls == [KEY_A]
    assert checks("cache") == hits + 1


async def test_a_known_key_id_with_a_wrong_secret_never_passes(verifier: KeyVerifier, keys: FakeKeys) -> None:
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None

    assert await verifier.verify(f"shk_{KEY_A}_s3creT") is None
    assert await verifier.verify(f"shk_{KEY_A}_s3cre") is None
    assert keys.calls == [KEY_A], "the cached hash answers; no second query"


async def test_past_the_ttl_the_database_answer_counts(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None
    del keys.records[KEY_A]  # revoked

    clock.now += TTL + 0.1
    assert await verifier.verify(token) is None
    assert keys.calls == [KEY_A, KEY_A]
    keys.mode = "fail"
    assert await verifier.verify(token) is None, "once refused, an outage does not bring it back"


@pytest.mark.parametrize("outage", ["hang", "fail"])
async def test_a_known_key_is_served_promptly_while_the_database_does_not_answer(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock, outage: str
) -> None:
    token = keys.add(KEY_A, "s3cret")
    expected = await verifier.verify(token)
    stale = checks("stale")
    clock.now += TTL + 0.1
    keys.mode = outage

    principal, took = await timed(verifier, token)

    assert principal == expected
    assert took < TIMEOUT + 0.5
    assert checks("stale") == stale + 1
    again, took = await timed(verifier, token)
    assert again == expected
    assert took < 0.1, "the database was just found away: no second wait"
    if outage == "hang":
        await asyncio.sleep(0)
        assert keys.cancelled == 1, "the hanging check is cancelled, not left holding a connection"


async def test_a_key_never_seen_gets_unavailable_within_the_check_timeout(
    verifier: KeyVerifier, keys: FakeKeys
) -> None:
    token = keys.add(KEY_A, "s3cret")
    keys.mode = "hang"
    unavailable = checks("unavailable")

    started = time.monotonic()
    with pytest.raises(UnavailableError, match="PostgreSQL is unreachable"):
        await verifier.verify(token)

    assert time.monotonic() - started < TIMEOUT + 0.5
    assert checks("unavailable") == unavailable + 1


async def test_a_burst_after_expiry_costs_one_query(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None
    clock.now += TTL + 0.1

    answers = await asyncio.gather(*(verifier.verify(token) for _ in range(50)))

    assert all(a is not None for a in answers)
    assert keys.calls == [KEY_A, KEY_A]


async def test_a_burst_against_a_frozen_database_waits_once_and_queries_once(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None
    clock.now += TTL + 0.1
    keys.mode = "hang"

    started = time.monotonic()
    answers = await asyncio.gather(*(verifier.verify(token) for _ in range(50)))

    assert all(a is not None for a in answers)
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert keys.calls == [KEY_A, KEY_A]


async def test_while_the_database_is_away_it_is_probed_once_per_retry_interval(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    a, b = keys.add(KEY_A, "s3cret"), keys.add(KEY_B, "other")
    assert await verifier.verify(a) is not None
    assert await verifier.verify(b) is not None
    clock.now += TTL + 0.1
    keys.mode = "fail"

    assert await verifier.verify(a) is not None
    assert await verifier.verify(b) is not None, "served at once: the database was just found away"
    with pytest.raises(UnavailableError):
        await verifier.verify(keys.add("cccccccccccc", "new"))
    assert keys.calls == [KEY_A, KEY_B, KEY_A]

    clock.now += POLICY.retry_after
    keys.mode = "answer"
    del keys.records[KEY_B]  # revoked during the outage
    assert await verifier.verify(b) is None, "the first check after the interval sees the revocation"
    assert await verifier.verify(a) is not None
    assert keys.calls == [KEY_A, KEY_B, KEY_A, KEY_B, KEY_A]


async def test_a_key_is_served_from_the_cache_for_max_stale_at_most(keys: FakeKeys, clock: FakeClock) -> None:
    policy = KeyCachePolicy(cache_ttl=TTL, check_timeout=TIMEOUT, max_stale=3600.0)
    verifier = KeyVerifier(keys, policy, clock=clock)
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None
    keys.mode = "fail"

    clock.now += 3600.0 - 1
    assert await verifier.verify(token) is not None
    clock.now += 2 + policy.retry_after
    with pytest.raises(UnavailableError):
        await verifier.verify(token)


async def test_an_unknown_key_id_is_remembered_briefly(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = f"shk_{KEY_A}_guess"
    for _ in range(20):
        assert await verifier.verify(token) is None
    assert keys.calls == [KEY_A]

    keys.mode = "fail"
    assert await verifier.verify(token) is None, "still refused (401), not 503, while remembered"
    clock.now += POLICY.unknown_ttl
    keys.mode = "answer"
    assert await verifier.verify(token) is None
    assert keys.calls == [KEY_A, KEY_A]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "shk",
        "shk__s",
        "shk_aaaaaaaaaaaa_",
        "shk_AAAAAAAAAAAA_s",
        "shk_aaaa_s",
        "shk_aaaaaaaaaaaa_s_t",
        "x",
    ],
)
async def test_a_token_not_in_the_key_format_costs_no_query(
    verifier: KeyVerifier, keys: FakeKeys, token: str
) -> None:
    keys.mode = "fail"
    assert await verifier.verify(token) is None
    assert keys.calls == []


async def test_the_caches_are_bounded(keys: FakeKeys, clock: FakeClock) -> None:
    verifier = KeyVerifier(keys, KeyCachePolicy(max_keys=2), clock=clock)
    tokens = [keys.add(f"{n:012x}", "s") for n in range(3)]
    for token in tokens:
        assert await verifier.verify(token) is not None
    assert await verifier.verify(tokens[2]) is not None
    assert len(keys.calls) == 3

    assert await verifier.verify(tokens[0]) is not None
    assert len(keys.calls) == 4, "the least recently used key was dropped and is asked for again"


async def test_serving_from_the_cache_is_logged_once_per_interval(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    token = keys.add(KEY_A, "s3cret")
    assert await verifier.verify(token) is not None
    clock.now += TTL + 0.1
    keys.mode = "fail"

    with capture_logs() as logs:
        for _ in range(100):
            assert await verifier.verify(token) is not None
        clock.now += POLICY.warn_every
        assert await verifier.verify(token) is not None
    warnings = [e for e in logs if e["event"] == "api_keys_unverifiable"]

    assert [w["log_level"] for w in warnings] == ["warning", "warning"]
    assert warnings[1]["served_from_cache"] == 100


async def test_a_database_error_that_is_not_an_outage_is_not_hidden(
    verifier: KeyVerifier, keys: FakeKeys, clock: FakeClock
) -> None:
    async def broken(_: str) -> KeyRecord | None:
        raise RuntimeError("column missing")

    with pytest.raises(RuntimeError, match="column missing"):
        await KeyVerifier(broken, POLICY, clock=clock).verify(f"shk_{KEY_A}_s")


async def test_bounded_answers_in_time_even_when_cancelling_takes_long() -> None:
    # What asyncpg does against a frozen server: the cancelled query waits for the server's reply.
    finished = asyncio.Event()

    async def slow_to_cancel() -> int:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await finished.wait()
            raise
        return 1

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await bounded(0.1, slow_to_cancel())
    assert time.monotonic() - started < 0.6
    finished.set()
    assert await bounded(1.0, asyncio.sleep(0, result=7)) == 7
