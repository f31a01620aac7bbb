"""The embedded nats-server and PostgreSQL, for real, in throwaway data dirs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest

from services.common.embedded import DataDirBusy, DataDirLock, EmbeddedNats, EmbeddedPostgres
from services.common.errors import EmbeddedServerError

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

# Starts both servers under a data dir lock, reports their pids, then waits to be killed. With
# "no-pdeathsig" it behaves as on a host whose setpriv lacks --pdeathsig, leaving orphans behind.
OWNER_SCRIPT = """
import asyncio, json, shutil, sys
from pathlib import Path
from services.common.embedded import DataDirLock, EmbeddedNats, EmbeddedPostgres, _process

async def main() -> None:
    data = Path(sys.argv[1])
    if sys.argv[2:] == ["no-pdeathsig"]:
        _process._setpriv = _process._Setpriv(shutil.which("setpriv"), pdeathsig=False)
    lock = DataDirLock(data)
    lock.acquire()
    nats_server, postgres = EmbeddedNats(data), EmbeddedPostgres(data)
    url, dsn = await nats_server.start(), await postgres.start()
    report = {"url": url, "dsn": dsn, "nats_pid": nats_server.pid, "pg_pid": postgres.pid}
    print(json.dumps(report), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def base_dir() -> Iterator[Path]:
    # Not tmp_path: pytest puts it under a 0700 /tmp/pytest-of-<user>, which the unprivileged
    # account PostgreSQL runs as (when the tests run as root) cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="safetyhub-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def servers(base_dir: Path) -> AsyncIterator[tuple[EmbeddedNats, EmbeddedPostgres]]:
    data = base_dir / "data"
    pair = EmbeddedNats(data), EmbeddedPostgres(data)
    yield pair
    for server in pair:
        await server.stop()


def ownership(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_until_gone(pids: list[int], deadline_s: float) -> list[int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    # The servers are not our children (or not anymore): polling is the only way to see them exit.
    while (alive := [pid for pid in pids if is_running(pid)]) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return alive


def kill_leftovers(pids: list[int]) -> None:
    # Only for a failed test: keep its servers from outliving the run.
    for pid in pids:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if is_running(pid) and psutil.Process(pid).name() in {"nats-server", "postgres"}:
                os.kill(pid, signal.SIGKILL)


async def table_value(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval("SELECT id FROM kept")
        return value
    finally:
        await conn.close()


async def asyncpg_execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval("SELECT 1")
        return value
    finally:
        await conn.close()


async def start_owner(
    data: Path, *prefix: str, mode: str = "normal"
) -> tuple[asyncio.subprocess.Process, dict[str, object]]:
    owner = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-c",
        OWNER_SCRIPT,
        str(data),
        mode,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert owner.stdout is not None
    try:
        line = await asyncio.wait_for(owner.stdout.readline(), 30)
    except BaseException:
        owner.kill()
        await owner.wait()
        raise
    assert line, "the owner process exited before starting the servers"
    report: dict[str, object] = json.loads(line)
    return owner, report


async def test_servers_answer_and_keep_data_across_restart(
    base_dir: Path, servers: tuple[EmbeddedNats, EmbeddedPostgres]
) -> None:
    nats_server, postgres = servers
    data = base_dir / "data"
    parent_before = ownership(base_dir)

    url, dsn = await nats_server.start(), await postgres.start()
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.account_info()
    await js.add_stream(name="EVENTS", subjects=["events.>"])
    await js.publish("events.test", b"accepted")
    await nc.close()
    conn = await asyncpg.connect(dsn)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)")
    await conn.close()
    assert EmbeddedPostgres.running_dsn(data) == dsn
    if IS_ROOT:
        assert postgres.pid is not None
        assert psutil.Process(postgres.pid).uids().real != 0

    await postgres.stop()
    await nats_server.stop()
    await postgres.stop()  # idempotent
    assert EmbeddedPostgres.running_dsn(data) is None

    url, dsn = await nats_server.start(), await postgres.start()
    assert await table_value(dsn) == 42
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info("EVENTS")
    await nc.close()
    assert info.state.messages == 1
    assert ownership(base_dir) == parent_before


def test_data_dir_lock_is_exclusive_until_released(base_dir: Path) -> None:
    first, second = DataDirLock(base_dir / "data"), DataDirLock(base_dir / "data")
    first.acquire()
    assert second.is_held_by_other()
    with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}") as busy:
        second.acquire()
    assert busy.value.pid == os.getpid()
    first.release()
    assert not second.is_held_by_other()
    with second:
        assert first.is_held_by_other()


async def test_killed_owner_leaves_no_server_and_data_dir_restarts(base_dir: Path) -> None:
    data = base_dir / "data"
    owner, report = await start_owner(data)
    pids = [int(str(report["nats_pid"])), int(str(report["pg_pid"]))]
    assert DataDirLock(data).is_held_by_other()

    owner.send_signal(signal.SIGKILL)
    await owner.wait()
    try:
        assert await wait_until_gone(pids, deadline_s=15) == []
    finally:
        kill_leftovers(pids)

    with DataDirLock(data):
        nats_server, postgres = EmbeddedNats(data), EmbeddedPostgres(data)
        try:
            await nats_server.start()
            assert await select_one(await postgres.start()) == 1
        finally:
            await postgres.stop()
            await nats_server.stop()


async def test_orphans_of_a_killed_owner_are_stopped_by_the_next_start(base_dir: Path) -> None:
    data = base_dir / "data"
    owner, report = await start_owner(data, mode="no-pdeathsig")
    await asyncpg_execute(str(report["dsn"]), "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)")
    orphans = [int(str(report["nats_pid"])), int(str(report["pg_pid"]))]
    owner.send_signal(signal.SIGKILL)
    await owner.wait()
    assert all(is_running(pid) for pid in orphans)
    assert EmbeddedPostgres.running_dsn(data) == report["dsn"]

    nats_server, postgres = EmbeddedNats(data), EmbeddedPostgres(data)
    try:
        await nats_server.start()
        assert await table_value(await postgres.start()) == 7
        assert [pid for pid in orphans if is_running(pid)] == []
    finally:
        await postgres.stop()
        await nats_server.stop()
        kill_leftovers(orphans)


@pytest.mark.skipif(not IS_ROOT, reason="only root hands PostgreSQL to another account")
async def test_data_dir_unreachable_for_postgres_account_is_refused(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    before = ownership(private), ownership(base_dir)

    with pytest.raises(EmbeddedServerError, match=f"cannot enter {re.escape(str(private))} ") as refused:
        await EmbeddedPostgres(private / "data").start()

    assert "SAFETYHUB_DATA_DIR" in str(refused.value)
    assert (ownership(private), ownership(base_dir)) == before
    assert not (private / "data").exists()


@pytest.mark.skipif(not IS_ROOT, reason="switches to an unprivileged user, which needs root")
async def test_runs_as_a_normal_user_from_site_packages(base_dir: Path) -> None:
    as_nobody = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    probe = await asyncio.create_subprocess_exec(
        *as_nobody,
        sys.executable,
        "-c",
        "import services",
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if await probe.wait() != 0:
        pytest.skip("the interpreter or the repo is not reachable for uid 65534 here")
    data = base_dir / "data"
    data.mkdir()
    os.chown(data, NOBODY, NOBODY)

    owner, report = await start_owner(data, *as_nobody)
    try:
        assert await select_one(str(report["dsn"])) == 1
        assert not (data / "pg" / "runtime").exists()
    finally:
        owner.send_signal(signal.SIGKILL)
        await owner.wait()
    pids = [int(str(report["nats_pid"])), int(str(report["pg_pid"]))]
    try:
        assert await wait_until_gone(pids, deadline_s=15) == []
    finally:
        kill_leftovers(pids)
