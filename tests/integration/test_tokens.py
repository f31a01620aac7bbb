"""People's tokens through a running hub, issued by `safetyhub tokens issue`, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.audit import Actor, entries, record
from services.common.auth.hub_key import hub_key, issue_token
from services.common.auth.principal import Principal
from services.common.outbox.unit_of_work import Outbox
from services.common.settings import AuthConfig, JwtConfig
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import DEMO_SITES, REPO, RunningHub, hub_config

pytestmark = pytest.mark.integration


async def safetyhub(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The test's own database; the site files are the checkout's (`sites/*.yaml`).
    env = {**os.environ, "SAFETYHUB_DATABASE_URL": database_url}
    env.pop("SAFETYHUB_NATS_URL", None)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.hub.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def issue(database_url: str, *args: str) -> str:
    result = await safetyhub(database_url, "tokens", "issue", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def call(
    hub: RunningHub, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = msgspec.json.encode(body) if body is not None else None
    async with hub.session.request(method, hub.url + path, data=data, headers=headers) as resp:
        return resp.status, msgspec.json.decode(await resp.read()), dict(resp.headers)


READING = {
    "site": "ulsan-refinery",
    "device": "gd-cdu1-101",
    "kind": "gas.h2s",
    "unit": "ppm",
    "value": 1.5,
    "time": datetime.now(UTC).isoformat(),
}


async def test_a_token_issued_by_the_command_is_accepted_with_its_tenant_roles_and_sites(
    running_hub: RunningHub, database_url: str
) -> None:
    viewer = await issue(
        database_url, "--user", "kim.minji", "--tenant", "ulsan-refining", "--roles", "viewer"
    )
    limited = await issue(
        database_url, "--user", "lee", "--tenant", "ulsan-refining", "--roles", "operator,viewer",
        "--sites", "ulsan-refinery", "--ttl", "30m", "--name", "Lee Jun",
    )  # fmt: skip

    status, body, _ = await call(running_hub, "GET", "/v1/sites", viewer)
    assert status == 200
    assert [s["id"] for s in body["items"]] == ["ulsan-refinery", "ulsan-refinery-east"]
    status, body, _ = await call(running_hub, "GET", "/v1/sites", limited)
    assert (status, [s["id"] for s in body["items"]]) == (200, ["ulsan-refinery"])

    # A viewer reads, and may not post.
    status, body, _ = await call(running_hub, "POST", "/v1/observations", viewer, READING)
    assert status == 403 and "viewer" in body["detail"]
    status, _, _ = await call(running_hub, "GET", "/v1/observations", viewer)
    assert status == 200


async def test_the_command_refuses_unknown_tenants_sites_and_roles(database_url: str) -> None:
    cases = [
        (["--tenant", "acme", "--roles", "viewer"], "--tenant: no tenant 'acme'"),
        (
            ["--tenant", "ulsan-refining", "--roles", "viewer", "--sites", "mipo-aromatics"],
            "belongs to tenant",
        ),
        (["--tenant", "ulsan-refining", "--roles", "gateway"], "--roles: unknown role 'gateway'"),
        (["--tenant", "ulsan-refining", "--roles", "viewer", "--ttl", "soon"], "--ttl:"),
    ]
    for args, says in cases:
        result = await safetyhub(database_url, "tokens", "issue", "--user", "kim", *args)
        assert result.returncode == 1, (args, result.stderr)
        assert says in result.stderr.strip().splitlines()[-1]
        assert result.stdout == "" and "Traceback" not in result.stderr


async def test_bad_tokens_get_401_naming_why_never_500(running_hub: RunningHub) -> None:
    key = await hub_key(running_hub.hub.pool)
    an_hour_ago = time.time() - 3600
    cases = {
        "expired": issue_token(
            key, subject="kim", tenant="ulsan-refining", roles=["viewer"], ttl_s=60, now=an_hour_ago
        ),
        "not known to this hub": issue_token(key, subject="kim", tenant="acme", roles=["viewer"]),
        "not a site of tenant": issue_token(
            key, subject="kim", tenant="ulsan-refining", roles=["viewer"], sites=["mipo-aromatics"]
        ),
        "signature": issue_token(key, subject="kim", tenant="ulsan-refining", roles=["viewer"])[:-4] + "AAAA",
        "well-formed": "a.b.c",
    }
    for says, token in cases.items():
        status, body, headers = await call(running_hub, "GET", "/v1/sites", token)
        assert status == 401, (says, body)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert says in body["detail"], body


async def test_key_changes_and_issued_tokens_are_in_the_audit_trail(
    migrated_pool: Any, database_url: str
) -> None:
    created = await safetyhub(
        database_url, "keys", "create", "--tenant", "ulsan-refining", "--role", "viewer"
    )
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.strip().split("_")[1]
    revoked = await safetyhub(database_url, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    token = await issue(
        database_url, "--user", "kim.minji", "--tenant", "ulsan-refining", "--roles", "operator"
    )

    trail = list(reversed(await entries(migrated_pool, tenant="ulsan-refining")))

    assert [(e.entry.action, e.entry.target) for e in trail] == [
        ("key.created", key_id),
        ("key.revoked", key_id),
        ("token.issued", "kim.minji"),
    ]
    assert {e.entry.actor_kind for e in trail} == {"command"}
    assert all(e.entry.actor and e.entry.source for e in trail)
    issued = trail[-1].entry.detail
    assert issued["roles"] == ["operator"] and issued["ttl_s"] == 8 * 3600
    assert token not in json.dumps(issued)  # the token itself is never kept


async def test_another_tenants_device_is_not_found_for_a_person(running_hub: RunningHub) -> None:
    key = await hub_key(running_hub.hub.pool)
    refining = issue_token(key, subject="kim", tenant="ulsan-refining", roles=["admin"])

    status, body, _ = await call(running_hub, "GET", "/v1/devices/gd-btx-101/latest", refining)

    assert status == 404, body


async def test_random_tokens_over_http_are_refused_never_a_500(running_hub: RunningHub) -> None:
    rng = random.Random(8)
    alphabet = string.ascii_letters + string.digits + "-_=+/.%~ "
    key = await hub_key(running_hub.hub.pool)
    good = issue_token(key, subject="kim", tenant="ulsan-refining", roles=["viewer"])
    tokens = ["..", "a.b.c", ".x.", good[:-1], good + ".", good.replace(".", "..", 1)]
    for _ in range(150):
        parts = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(3)]
        tokens.append(".".join(parts))
        # The hub's real header and body with a mangled signature, or the other way round.
        head, body, sig = good.split(".")
        mangled = [head, body, sig]
        mangled[rng.randrange(3)] = parts[0]
        tokens.append(".".join(mangled))
    statuses = set()
    for token in tokens:
        headers = {"Authorization": f"Bearer {token.strip() or 'x'}"}
        async with running_hub.session.get(running_hub.url + "/v1/sites", headers=headers) as resp:
            statuses.add(resp.status)
            assert resp.status in (400, 401), (token, resp.status, await resp.text())
    assert statuses == {401}


async def test_an_operator_action_and_its_audit_row_commit_together_or_not_at_all(migrated_pool: Any) -> None:
    outbox = Outbox(migrated_pool, "audit-test")
    person = Principal(
        key_id="person:kim",
        tenant="ulsan-refining",
        role="operator",
        sites=None,
        kind="person",
        subject="kim",
    )
    who = Actor.of(person, source="10.0.0.7", request_id="req-1")

    async with outbox.unit_of_work() as uow:
        await record(uow.connection, who.entry("alarm.acknowledged", tenant="ulsan-refining", target="a-1"))

    async def failing_action() -> None:
        async with outbox.unit_of_work() as uow:
            await record(uow.connection, who.entry("alarm.shelved", tenant="ulsan-refining", target="a-1"))
            raise RuntimeError("the action failed after its audit row was written")

    with pytest.raises(RuntimeError):
        await failing_action()

    (row,) = await entries(migrated_pool, target="a-1")
    assert (row.entry.action, row.entry.actor, row.entry.actor_kind) == (
        "alarm.acknowledged",
        "kim",
        "person",
    )
    assert (row.entry.source, row.entry.request_id) == ("10.0.0.7", "req-1")


async def test_a_hub_configured_with_an_identity_providers_key_takes_its_tokens_and_its_own(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    idp = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "idp.pem").write_bytes(
        idp.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwt_config = JwtConfig(
        public_key_file="idp.pem", issuer="https://id.example.com/", audience="safetyhub-api"
    )
    # Relative key paths count from the config file's directory: `base` here.
    config = hub_config(auth=AuthConfig(jwt=jwt_config), sites=[str(DEMO_SITES)])
    hub = Hub(config, tmp_path, Endpoints(nats_url, database_url))
    await hub.start()
    try:
        now = int(time.time())
        claims = {
            "sub": "park",
            "tenant": "mipo-petrochem",
            "roles": ["viewer", "offline_access"],
            "exp": now + 60,
        }
        from_idp = jwt.encode(
            {**claims, "iss": "https://id.example.com/", "aud": "safetyhub-api"}, idp, algorithm="ES256"
        )
        own = issue_token(await hub_key(hub.pool), subject="kim", tenant="ulsan-refining", roles=["viewer"])
        wrong_audience = jwt.encode(
            {**claims, "iss": "https://id.example.com/", "aud": "x"}, idp, algorithm="ES256"
        )
        async with aiohttp.ClientSession() as session:
            results = {}
            for name, token in (("idp", from_idp), ("own", own), ("audience", wrong_audience)):
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(hub.http_url + "/v1/sites", headers=headers) as resp:
                    body = await resp.json(content_type=None)
                    results[name] = (resp.status, [s["id"] for s in body.get("items", [])])
    finally:
        await hub.stop()

    assert results == {
        "idp": (200, ["mipo-aromatics"]),
        "own": (200, ["ulsan-refinery"]),
        "audience": (401, []),
    }
