"""While PostgreSQL is frozen or killed, ingest goes on accepting and nothing hangs.

A PostgreSQL of this module alone is frozen (SIGSTOP to the postmaster and every backend, as a
paused VM or a stalled disk would leave it) or killed (SIGKILL) under a running hub. The hub runs
with a 1 s key cache so that "past its TTL" takes a second, not thirty.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.auth import verifier as key_verifier
from services.common.auth.keys import create_key
from services.common.auth.verifier import KeyCachePolicy
from services.hub.bootstrap import Endpoints, Hub
from services.store.query import QUERY_TIMEOUT_S
from tests.conftest import REPO, eventually, hub_config
from tests.integration.private_postgres import PrivatePostgres

pytestmark = pytest.mark.integration

POLICY = KeyCachePolicy(cache_ttl=1.0)
# How long a revoked key may still work once PostgreSQL answers again (README: Key verification).
REVOCATION_BOUND_S = POLICY.cache_ttl + POLICY.check_timeout + POLICY.retry_after
READY_CHECK_S = 2.0  # /readyz gives each check this long
SLACK_S = 2.0  # for a loaded machine: every bound below is the design figure plus this
TENANT = "ulsan-refining"


@pytest.fixture
async def hub(
    private_postgres: PrivatePostgres, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    monkeypatch.setattr(key_verifier, "DEFAULT_POLICY", POLICY)
    hub = Hub(hub_config(), REPO, Endpoints(nats_url, await private_postgres.new_database()))
    await hub.start()
    yield hub
    await hub.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def reading(value: float) -> bytes:
    return msgspec.json.encode(
        {
            "id": f"o-{uuid.uuid4().hex}",
            "site": "ulsan-refinery",
            "device": "gd-cdu1-101",
            "kind": "gas.h2s",
            "value": value,
        }
    )


@dataclass
class Answer:
    status: int
    seconds: float
    headers: dict[str, str]


async def post(session: aiohttp.ClientSession, hub: Hub, key: str, value: float = 1.0) -> Answer:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    started = time.monotonic()
    async with session.post(
        hub.http_url + "/v1/observations", data=io.BytesIO(reading(value)), headers=headers
    ) as resp:
        await resp.read()
        return Answer(resp.status, time.monotonic() - started, dict(resp.headers))


async def get(session: aiohttp.ClientSession, hub: Hub, key: str, path: str = "/v1/observations") -> Answer:
    started = time.monotonic()
    async with session.get(hub.http_url + path, headers={"Authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        return Answer(resp.status, time.monotonic() - started, dict(resp.headers))


async def key_checks(session: aiohttp.ClientSession, hub: Hub) -> dict[str, float]:
    async with session.get(hub.http_url + "/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == "safetyhub_auth_key_checks":
            return {s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")}
    return {}


@contextlib.asynccontextmanager
async def outage(postgres: PrivatePostgres, kind: str) -> AsyncIterator[None]:
    if kind == "frozen":
        with postgres.frozen():
            yield
    else:
        async with postgres.killed():
            yield


def is_problem(answer: Answer) -> bool:
    return answer.headers.get("Content-Type", "").startswith("application/problem+json")


@pytest.mark.parametrize("kind", ["frozen", "killed"])
async def test_known_keys_post_and_nothing_hangs_while_postgresql_is_away(
    hub: Hub, private_postgres: PrivatePostgres, session: aiohttp.ClientSession, kind: str
) -> None:
    gateway = await create_key(hub.pool, tenant=TENANT, role="gateway")
    viewer = await create_key(hub.pool, tenant=TENANT, role="viewer")
    never_used = await create_key(hub.pool, tenant=TENANT, role="gateway")
    assert (await post(session, hub, gateway, 1.0)).status == 202
    assert (await get(session, hub, viewer)).status == 200
    await asyncio.sleep(POLICY.cache_ttl + 0.1)  # past the TTL: the next use asks PostgreSQL again

    async with outage(private_postgres, kind):
        first = await post(session, hub, gateway, 2.0)
        then = await post(session, hub, gateway, 3.0)
        unknown_to_the_cache = await post(session, hub, never_used)
        read = await get(session, hub, viewer)
        ready = await get(session, hub, viewer, "/readyz")

    assert (first.status, then.status) == (202, 202), "a known key goes on posting"
    assert first.seconds < POLICY.check_timeout + SLACK_S, "one bounded check, then the cache"
    assert then.seconds < SLACK_S, "and no further wait while PostgreSQL is away"
    assert unknown_to_the_cache.status == 503 and is_problem(unknown_to_the_cache)
    assert int(unknown_to_the_cache.headers["Retry-After"]) > 0
    assert unknown_to_the_cache.seconds < POLICY.check_timeout + SLACK_S
    assert read.status == 503 and is_problem(read) and int(read.headers["Retry-After"]) > 0
    assert read.seconds < QUERY_TIMEOUT_S + SLACK_S
    assert ready.status == 503 and ready.seconds < READY_CHECK_S + SLACK_S

    async def all_stored() -> bool:
        return await hub.pool.fetchval("SELECT count(*) FROM observations") == 3

    await eventually(all_stored, timeout=30, what="the readings accepted during the outage, stored after it")

    async def verified() -> bool:
        return (await post(session, hub, never_used)).status == 202

    # After a failed check PostgreSQL is left alone for retry_after; then the key is checked.
    await eventually(verified, timeout=POLICY.retry_after + SLACK_S, what="the new key verified")


async def test_a_key_revoked_out_of_sight_stops_working_within_the_bound_once_postgresql_answers(
    hub: Hub, private_postgres: PrivatePostgres, session: aiohttp.ClientSession
) -> None:
    revoked = await create_key(hub.pool, tenant=TENANT, role="gateway")
    kept = await create_key(hub.pool, tenant=TENANT, role="gateway")
    assert (await post(session, hub, revoked)).status == 202
    assert (await post(session, hub, kept)).status == 202
    await hub.pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", revoked.split("_")[1])
    await asyncio.sleep(POLICY.cache_ttl + 0.1)

    with private_postgres.frozen():
        during = await post(session, hub, revoked)
    thawed = time.monotonic()

    # The price of accepting during an outage: the hub cannot learn of the revocation meanwhile.
    assert during.status == 202

    async def refused() -> bool:
        return (await post(session, hub, revoked)).status == 401

    await eventually(refused, timeout=REVOCATION_BOUND_S + SLACK_S, what="the revoked key to be refused")
    assert time.monotonic() - thawed < REVOCATION_BOUND_S + SLACK_S
    assert (await post(session, hub, kept)).status == 202


async def test_unknown_and_malformed_tokens_cost_no_query_each(
    hub: Hub, private_postgres: PrivatePostgres, session: aiohttp.ClientSession
) -> None:
    guess = "shk_0123456789ab_guessed-secret"
    before = await key_checks(session, hub)
    answers = [await post(session, hub, guess) for _ in range(20)]
    answers += [await post(session, hub, f"shk_{uuid.uuid4().hex}_x") for _ in range(20)]
    answers += [await post(session, hub, uuid.uuid4().hex) for _ in range(20)]
    after = await key_checks(session, hub)

    assert {a.status for a in answers} == {401}
    assert after.get("database", 0) - before.get("database", 0) == 1, "one query, for the first guess"
    assert after["cache_unknown"] - before.get("cache_unknown", 0) == 19
    assert after["malformed"] - before.get("malformed", 0) == 40

    with private_postgres.frozen():
        again = await post(session, hub, guess)
    assert again.status == 401, "still remembered as unknown: refused, not 503"
    assert again.seconds < SLACK_S
