"""Child processes the hub owns: spawn them so they die with the hub, stop them, and find orphans.

Shared by the nats-server and PostgreSQL wrappers. Everything here spawns from the event loop thread
on purpose: the kernel sends the parent-death signal when the *thread* that forked the child exits,
so a child spawned from a worker thread would be stopped as soon as that thread finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from services.common.errors import EmbeddedServerError

_LOG_TAIL_BYTES = 4000
_POLL_S = 0.05


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a server runs under when the hub itself runs as root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Setpriv:
    path: str | None
    pdeathsig: bool


_setpriv: _Setpriv | None = None


async def _find_setpriv() -> _Setpriv:
    # Probed once per process, lazily: no I/O at import, and older util-linux lacks --pdeathsig.
    global _setpriv
    if _setpriv is None:
        path = shutil.which("setpriv")
        pdeathsig = False
        if path is not None:
            proc = await asyncio.create_subprocess_exec(
                path, "--help", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
            pdeathsig = b"--pdeathsig" in out
        _setpriv = _Setpriv(path, pdeathsig)
    return _setpriv


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry once if they lose the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_offset(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(path: Path, offset: int) -> str:
    """What a child wrote to its (append-only, shared across runs) log since `offset`, last part only."""
    try:
        with path.open("rb") as log:
            log.seek(max(offset, log_offset(path) - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").strip()
    except OSError:
        return ""


async def spawn(
    argv: list[str], *, log_path: Path, death_signal: signal.Signals, run_as: RunAs | None = None
) -> asyncio.subprocess.Process:
    """Start `argv` as a child of the hub, stdout and stderr appended to `log_path`.

    The child gets `death_signal` if the hub dies (when setpriv supports it), runs as `run_as` if
    given, and sits in its own session so a Ctrl-C in the hub's terminal does not stop it behind the
    hub's back: the hub stops its servers itself, after draining.
    """
    setpriv = await _find_setpriv()
    prefix: list[str] = []
    extra: dict[str, Any] = {}
    if setpriv.path is not None and (setpriv.pdeathsig or run_as is not None):
        prefix = [setpriv.path]
        if run_as is not None:
            prefix += [f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups"]
        # setpriv sets the death signal after switching uid; a credential change would clear it.
        if setpriv.pdeathsig:
            prefix += ["--pdeathsig", death_signal.name]
        prefix.append("--")
    elif run_as is not None:
        extra = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        return await asyncio.create_subprocess_exec(
            *prefix,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **extra,
        )
    except OSError as err:
        raise EmbeddedServerError(f"cannot start {argv[0]}: {err}") from err
    finally:
        os.close(log_fd)


async def run_to_end(argv: list[str], *, log_path: Path, run_as: RunAs | None, what: str) -> None:
    """Run a one-shot tool (initdb) as a child and raise with its output if it fails."""
    offset = log_offset(log_path)
    proc = await spawn(argv, log_path=log_path, death_signal=signal.SIGTERM, run_as=run_as)
    if await proc.wait() != 0:
        raise EmbeddedServerError(
            f"{what} failed with exit code {proc.returncode}:\n{log_since(log_path, offset)}"
        )


async def stop_child(
    proc: asyncio.subprocess.Process,
    sig: signal.Signals,
    grace_s: float,
    *,
    escalate: signal.Signals = signal.SIGKILL,
) -> None:
    """Send `sig`, wait up to `grace_s`, then `escalate` (and SIGKILL as the last resort)."""
    for signum, wait_s in ((sig, grace_s), (escalate, 5.0), (signal.SIGKILL, 5.0)):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), wait_s)
    if proc.returncode is None:
        raise EmbeddedServerError(f"process {proc.pid} did not exit even after SIGKILL")


@dataclass(frozen=True)
class Expected:
    """How to recognise our server behind the pid in a pid file.

    Pids are reused, even by another nats-server or postgres on the same host (a system service), so
    the name is not enough: its command line must also mention our data dir.
    """

    name: str
    path: Path


def is_live(pid: int, expected: Expected) -> bool:
    """True if `pid` is our server and running (not a zombie)."""
    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.name() == expected.name
            and str(expected.path) in " ".join(process.cmdline())
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


async def stop_orphan(pid: int, expected: Expected, sig: signal.Signals, grace_s: float) -> None:
    """Stop a server a previous, killed hub left behind; it is not our child, so poll instead of wait."""
    loop = asyncio.get_running_loop()
    for signum, wait_s in ((sig, grace_s), (signal.SIGKILL, 5.0)):
        if not is_live(pid, expected):
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        except PermissionError as err:
            raise EmbeddedServerError(
                f"{expected.name} (pid {pid}), left running by a previous hub, belongs to another user "
                "and cannot be stopped from here; stop it and retry"
            ) from err
        deadline = loop.time() + wait_s
        # Not our child: there is no wait() or event for its exit, only polling.
        while is_live(pid, expected) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)
    if is_live(pid, expected):
        raise EmbeddedServerError(f"{expected.name} (pid {pid}), left by a previous hub, does not exit")
