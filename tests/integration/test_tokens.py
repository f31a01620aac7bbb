"""People's tokens through a running hub, issued by `safetyhub tokens issue`, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.common.audit import entries
from services.common.auth.hub_key import hub_key, issue_token
from tests.conftest import REPO, RunningHub

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
