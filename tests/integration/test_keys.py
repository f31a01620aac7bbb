"""API keys against a real PostgreSQL: created once, stored as a hash, verified, revoked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from services.common.auth.keys import KeyRequestError, create_key, list_keys, revoke_key
from services.common.auth.principal import Principal
from services.common.auth.verifier import KeyCachePolicy, KeyVerifier

pytestmark = pytest.mark.integration

TTL = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool(migrated_pool: asyncpg.Pool) -> asyncpg.Pool:
    return migrated_pool


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(pool: asyncpg.Pool, clock: FakeClock) -> KeyVerifier:
    return KeyVerifier(pool, KeyCachePolicy(cache_ttl=TTL), clock=clock)


def key_id(token: str) -> str:
    return token.split("_")[1]


def secret(token: str) -> str:
    return token.split("_")[2]


async def test_a_new_key_verifies_as_its_tenant_role_and_sites(
    pool: asyncpg.Pool, verifier: KeyVerifier
) -> None:
    scoped = await create_key(pool, tenant="acme", role="gateway", sites=["refinery", "tank-farm"])
    tenant_wide = await create_key(pool, tenant="acme", role="viewer")

    assert await verifier.verify(scoped) == Principal(
        key_id=key_id(scoped), tenant="acme", role="gateway", sites=frozenset({"refinery", "tank-farm"})
    )
    assert await verifier.verify(tenant_wide) == Principal(
        key_id=key_id(tenant_wide), tenant="acme", role="viewer", sites=None
    )
    assert key_id(scoped) != key_id(tenant_wide)


async def test_keys_of_different_tenants_do_not_mix(pool: asyncpg.Pool, verifier: KeyVerifier) -> None:
    acme = await create_key(pool, tenant="acme", role="gateway")
    other = await create_key(pool, tenant="other", role="gateway")

    acme_principal, other_principal = await verifier.verify(acme), await verifier.verify(other)

    assert acme_principal is not None
    assert other_principal is not None
    assert (acme_principal.tenant, other_principal.tenant) == ("acme", "other")


async def test_a_tampered_secret_does_not_verify(pool: asyncpg.Pool, verifier: KeyVerifier) -> None:
    token = await create_key(pool, tenant="acme", role="gateway")
    assert await verifier.verify(token) is not None  # cached now: the cache must not leak to others

    flipped = "A" if secret(token)[-1] != "A" else "B"
    assert await verifier.verify(token[:-1] + flipped) is None
    assert await verifier.verify(token[:-1]) is None
    # Another key's secret under this key's id.
    other = await create_key(pool, tenant="acme", role="gateway")
    assert await verifier.verify(f"shk_{key_id(token)}_{secret(other)}") is None


async def test_an_unknown_key_id_does_not_verify(pool: asyncpg.Pool, verifier: KeyVerifier) -> None:
    token = await create_key(pool, tenant="acme", role="gateway")

    assert await verifier.verify(f"shk_000000000000_{secret(token)}") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "shk",
        "shk_",
        "shk__secret",
        "shk_abc_",
        "shk_abc",
        "shk_a_b_c",
        "key_abc_secret",
        "Bearer shk_a_b",
    ],
)
async def test_a_malformed_token_does_not_verify(verifier: KeyVerifier, token: str) -> None:
    assert await verifier.verify(token) is None


async def test_only_a_hash_of_the_secret_is_stored(pool: asyncpg.Pool) -> None:
    token = await create_key(pool, tenant="acme", role="admin", description="ops laptop")

    row = await pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id(token))
    assert row is not None
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret(token).encode()).digest()
    everything = await pool.fetchval(
        "SELECT row_to_json(k)::text FROM api_keys k WHERE key_id = $1", key_id(token)
    )
    assert secret(token) not in everything
    assert token not in everything
    assert (row["tenant"], row["role"], row["description"]) == ("acme", "admin", "ops laptop")


async def test_a_key_for_an_unknown_role_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(KeyRequestError, match="unknown role 'root'"):
        await create_key(pool, tenant="acme", role="root")
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_a_key_limited_to_no_sites_never_grants_every_site(
    pool: asyncpg.Pool, verifier: KeyVerifier
) -> None:
    # `sites=None` means "every site of the tenant". An empty list is a caller asking for a key
    # limited to nothing (e.g. `--sites ,` on the command line, or a filtered list that came out
    # empty); widening it to the whole tenant fails open. Refusing it, or a key for no site, is fine.
    try:
        token = await create_key(pool, tenant="acme", role="gateway", sites=[])
    except KeyRequestError:
        return
    principal = await verifier.verify(token)

    assert principal is not None
    assert not principal.may_access_site("refinery", "acme"), f"sites=[] was stored as {principal.sites}"


async def test_a_device_key_verifies_with_its_devices(pool: asyncpg.Pool, verifier: KeyVerifier) -> None:
    token = await create_key(
        pool, tenant="acme", role="gateway", sites=["refinery"], devices=["gd-101", "gd-102"]
    )

    principal = await verifier.verify(token)

    assert principal is not None
    assert principal.devices == frozenset({"gd-101", "gd-102"})
    assert principal.may_post_for_device("gd-101")
    assert not principal.may_post_for_device("gd-103")
    other = await verifier.verify(await create_key(pool, tenant="acme", role="gateway"))
    assert other is not None and other.devices is None and other.may_post_for_device("gd-103")


@pytest.mark.parametrize(
    ("role", "devices", "reason"),
    [("gateway", [], "no devices"), ("viewer", ["gd-101"], "only a gateway key")],
)
async def test_a_device_limit_that_makes_no_sense_is_refused(
    pool: asyncpg.Pool, role: str, devices: list[str], reason: str
) -> None:
    with pytest.raises(KeyRequestError, match=reason):
        await create_key(pool, tenant="acme", role=role, devices=devices)
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_a_revoked_key_stops_verifying_once_the_cache_expires(
    pool: asyncpg.Pool, verifier: KeyVerifier, clock: FakeClock
) -> None:
    token = await create_key(pool, tenant="acme", role="gateway")
    assert await verifier.verify(token) is not None

    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id(token))

    clock.now += TTL - 1
    assert await verifier.verify(token) is not None, "within the ttl the cached answer stands"
    clock.now += 2
    assert await verifier.verify(token) is None
    clock.now += 1
    assert await verifier.verify(token) is None, "a refusal is not turned back into a cached yes"
    # A fresh verifier (another worker process) refuses it at once.
    assert await KeyVerifier(pool, KeyCachePolicy(cache_ttl=TTL), clock=clock).verify(token) is None


async def test_keys_are_listed_with_their_limits_and_never_their_secrets(pool: asyncpg.Pool) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    gateway = await create_key(
        pool, tenant="acme", role="gateway", sites=["refinery"], devices=["gd-101"], description="gd-101"
    )
    viewer = await create_key(pool, tenant="acme", role="viewer")
    await create_key(pool, tenant="other", role="admin")

    listed = await list_keys(pool, tenant="acme")

    assert [k.key_id for k in listed] == [key_id(gateway), key_id(viewer)]
    first = listed[0]
    assert (first.tenant, first.role, first.sites, first.devices, first.description) == (
        "acme",
        "gateway",
        ("refinery",),
        ("gd-101",),
        "gd-101",
    )
    assert listed[1].sites is None and listed[1].devices is None
    assert before < first.created_at <= datetime.now(UTC) and first.revoked_at is None
    assert secret(gateway) not in repr(listed)
    assert len(await list_keys(pool)) == 3


async def test_a_revoked_key_stops_verifying_and_leaves_the_list_unless_all_are_asked_for(
    pool: asyncpg.Pool,
) -> None:
    token = await create_key(pool, tenant="acme", role="gateway")
    kept = await create_key(pool, tenant="acme", role="gateway")

    revoked = await revoke_key(pool, key_id(token))

    assert revoked.key_id == key_id(token) and revoked.revoked_at is not None
    assert await KeyVerifier(pool).verify(token) is None
    assert await KeyVerifier(pool).verify(kept) is not None
    assert [k.key_id for k in await list_keys(pool, tenant="acme")] == [key_id(kept)]
    everything = await list_keys(pool, tenant="acme", include_revoked=True)
    assert [(k.key_id, k.revoked_at is not None) for k in everything] == [
        (key_id(token), True),
        (key_id(kept), False),
    ]


async def test_revoking_twice_or_an_unknown_key_is_an_error(pool: asyncpg.Pool) -> None:
    token = await create_key(pool, tenant="acme", role="gateway")
    first = await revoke_key(pool, key_id(token))

    with pytest.raises(KeyRequestError, match="already revoked"):
        await revoke_key(pool, key_id(token))
    with pytest.raises(KeyRequestError, match="no key '000000000000'"):
        await revoke_key(pool, "000000000000")
    again = await pool.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", key_id(token))
    assert again == first.revoked_at, "a second revocation must not move the time it was revoked"


async def test_creating_and_revoking_a_key_are_audit_events_without_the_secret(pool: asyncpg.Pool) -> None:
    with capture_logs() as logs:
        token = await create_key(pool, tenant="acme", role="operator")
        await revoke_key(pool, key_id(token))

    audit = [entry for entry in logs if entry["event"] == "audit"]
    assert [
        (entry["action"], entry["key_id"], entry["tenant"], entry["role"]) for entry in audit
    ] == [
        ("key_created", key_id(token), "acme", "operator"),
        ("key_revoked", key_id(token), "acme", "operator"),
    ]
    assert secret(token) not in repr(logs)
