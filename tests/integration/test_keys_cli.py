"""`safetyhub keys create|list|revoke` as a user runs them, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, database_url: str) -> None:
        # The test's own database; the site files are the checkout's (`sites/*.yaml`).
        self.env = {**os.environ, "SAFETYHUB_DATABASE_URL": database_url}
        self.env.pop("SAFETYHUB_NATS_URL", None)

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.hub.cli", "keys", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


@pytest.mark.parametrize(
    ("limits", "option", "detail"),
    [
        (["--tenant", "acme"], "--tenant", "no tenant 'acme'"),
        (["--tenant", "ulsan-refining", "--sites", "mipo-aromatics"], "--sites", "belongs to tenant"),
        (["--tenant", "ulsan-refining", "--devices", "nope-1"], "--devices", "no device 'nope-1'"),
    ],
)
async def test_create_refuses_what_the_site_files_do_not_declare(
    cli: Cli, limits: list[str], option: str, detail: str
) -> None:
    result = await cli("create", "--role", "gateway", *limits)

    assert result.returncode == 1
    # Log lines (JSON) may come first; the error is the last line.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"safetyhub: {option}: ")
    assert detail in last
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_a_key_is_created_listed_and_revoked_once(cli: Cli) -> None:
    created = await cli(
        "create", "--tenant", "ulsan-refining", "--role", "gateway", "--sites", "ulsan-refinery",
        "--devices", "gd-cdu1-101", "--description", "CDU detector 101",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id, secret = token.split("_")[1:]
    logged = [json.loads(line) for line in created.stderr.splitlines() if line.startswith("{")]
    audit = [a for a in logged if a.get("event") == "audit"]
    assert [(a["action"], a["key_id"], a["tenant"], a["role"]) for a in audit] == [
        ("key_created", key_id, "ulsan-refining", "gateway")
    ]
    assert secret not in created.stderr

    listed = await cli("list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["KEY", "ID", "TENANT"] and "REVOKED" in header
    assert row.split()[:5] == [key_id, "ulsan-refining", "gateway", "ulsan-refinery", "gd-cdu1-101"]
    assert "CDU detector 101" in row and row.rstrip().endswith("-")
    assert secret not in listed.stdout

    revoked = await cli("revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert key_id in revoked.stdout

    again = await cli("revoke", key_id)
    assert again.returncode == 1 and "already revoked" in again.stderr
    unknown = await cli("revoke", "0123456789ab")
    assert unknown.returncode == 1 and "no key '0123456789ab'" in unknown.stderr

    assert (await cli("list")).stdout.strip() == "no keys"
    everything = await cli("list", "--all", "--tenant", "ulsan-refining")
    (row,) = everything.stdout.splitlines()[1:]
    assert row.startswith(key_id) and row.rstrip().endswith("Z")
    assert (await cli("list", "--tenant", "mipo-petrochem", "--all")).stdout.strip() == "no keys"
