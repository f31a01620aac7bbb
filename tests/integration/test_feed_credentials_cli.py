"""`safetyhub feed credentials create|list|revoke` as an operator runs them: against the hub's running
embedded nats-server (reloaded in place) and a real PostgreSQL holding the audit trail."""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import nats
import pytest
from nats.js.api import AckPolicy

from services.common.embedded import EmbeddedNats
from services.common.embedded.nats_server import find_nats_server
from tests.conftest import REPO, reachable_temp_dir
from tests.integration.test_feed_credentials import _login

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = reachable_temp_dir("safetyhub-feed-cli-")
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def hub_nats(data_dir: Path) -> AsyncIterator[str]:
    """The embedded server of a hub on `data_dir`, with the FEED stream; yields the hub's URL."""
    server = EmbeddedNats(data_dir)
    url = await server.start()
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(name="FEED", subjects=["feed.>"])
    await nc.close()
    yield url
    await server.stop()


class Cli:
    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.env = {**os.environ, "SAFETYHUB_DATABASE_URL": database_url}
        self.env.pop("SAFETYHUB_NATS_URL", None)
        self.data_dir = data_dir

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.hub.cli", "feed", "credentials", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _field(stdout: str, name: str) -> str:
    for line in stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {stdout}")


async def test_create_list_revoke_against_the_running_hub_and_audited(
    hub_nats: str, data_dir: Path, database_url: str
) -> None:
    cli = Cli(database_url, data_dir)

    created = await cli("create", "--name", "city-ulsan", "--data-dir", str(data_dir), "--print-config")

    assert created.returncode == 0, created.stderr
    url = _field(created.stdout, "url")
    secret = _field(created.stdout, "password")
    address = urlsplit(hub_nats).netloc.rsplit("@", 1)[1]
    assert url == f"nats://city-ulsan:{secret}@{address}"
    assert "in force now" in created.stdout
    assert "accounts {" in created.stdout and '"$2b$' in created.stdout
    assert "durable       city-ulsan" in created.stdout
    assert created.stdout.count(secret) == 3  # url, password, the command line to follow it
    # The block for an external server is one nats-server itself accepts.
    block = created.stdout[created.stdout.index("# Merge into") :]
    conf = data_dir / "external.conf"
    await asyncio.to_thread(conf.write_text, block)
    checked = await asyncio.to_thread(
        subprocess.run,
        [find_nats_server(), "-c", str(conf), "-t"],
        env={**os.environ, "HUB_PASSWORD": "s3cret"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The city connects at once with what it was given, and reads through the durable the hub made.
    city = await nats.connect(url, inbox_prefix="_INBOX_city-ulsan", allow_reconnect=False)
    info = await city.jetstream(prefix="HUB.API").consumer_info("FEED", "city-ulsan")
    assert info.name == "city-ulsan" and info.config.ack_policy == AckPolicy.EXPLICIT
    await city.close()

    again = await cli("create", "--name", "city-ulsan", "--data-dir", str(data_dir))
    assert again.returncode == 1 and "already has credentials" in again.stderr

    listed = await cli("list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert "city-ulsan" in listed.stdout and secret not in listed.stdout

    revoked = await cli("revoke", "city-ulsan", "--data-dir", str(data_dir))
    assert revoked.returncode == 0, revoked.stderr
    assert "dropped" in revoked.stdout
    assert await _login(address, "city-ulsan", secret) == "-ERR 'Authorization Violation'"
    assert "no feed credentials" in (await cli("list", "--data-dir", str(data_dir))).stdout
    assert "city-ulsan" in (await cli("list", "--all", "--data-dir", str(data_dir))).stdout

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, actor, actor_kind, target FROM audit_log WHERE target = 'city-ulsan' ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["action"], r["actor"], r["actor_kind"]) for r in rows] == [
        ("feed_credentials.created", getpass.getuser(), "command"),
        ("feed_credentials.revoked", getpass.getuser(), "command"),
    ]  # the refused second create left no row


@pytest.mark.parametrize("name", ["City Ulsan", "city.ulsan", "hub", "x"])
async def test_a_bad_name_exits_2_saying_what_a_name_may_be(
    name: str, data_dir: Path, database_url: str
) -> None:
    result = await Cli(database_url, data_dir)("create", "--name", name, "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert "--name" in result.stderr and "Traceback" not in result.stderr
    assert not (data_dir / "nats" / "users.json").exists()
