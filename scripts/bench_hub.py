"""What the benchmark scripts share: a `safetyhub up` of their own in a work dir, and its keys.

The hub runs on embedded NATS and PostgreSQL in `<workdir>/data`, logs to `<workdir>/hub.log`, and
is ready once it has written its `runtime.json` (its URLs) with its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def _spawn(
    workdir: Path, config: Path | None, workers: int | None, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Under cProfile, the hub writes its profile to `profile` when it stops.
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    command = [
        sys.executable,
        *profiler,
        "-m",
        "services.hub.cli",
        "up",
        "--data-dir",
        str(data_dir),
        "--http-port",
        "0",
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    if config is not None:
        command += ["--config", str(config)]
    with (workdir / "hub.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def start_hub(
    workdir: Path,
    *,
    config: Path | None = None,
    workers: int | None = None,
    timeout_s: float = 90.0,
    profile: Path | None = None,
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start the hub; returns its process and its runtime info (nats_url, database_url, http_url).
    With `profile`, the hub runs under cProfile and writes its profile there when it stops."""
    proc = await asyncio.to_thread(_spawn, workdir, config, workers, profile)
    runtime = workdir / "data" / "runtime.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub exited early; see {workdir / 'hub.log'}")
        if runtime.exists():
            info: dict[str, str] = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        await asyncio.sleep(0.1)
    raise SystemExit(f"hub did not start within {timeout_s:.0f} s")


def create_key(workdir: Path, tenant: str, role: str) -> str:
    """A new API key of the hub in `workdir` (blocking: run it in a thread)."""
    command = [
        sys.executable,
        "-m",
        "services.hub.cli",
        "keys",
        "create",
        "--data-dir",
        str(workdir / "data"),
    ]
    out = subprocess.run(
        [*command, "--tenant", tenant, "--role", role], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def tree_cpu(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds (user and system) each process of the hub's tree has used so far, by pid and
    part: the hub (supervisor and workers), its nats-server, its PostgreSQL (server and backends).
    Unlike a rate or a latency, this hardly changes when other programs share the machine."""
    used: dict[tuple[int, str], float] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                name = process.name()
                part = "postgres" if "postgres" in name else "nats" if "nats-server" in name else "hub"
                times = process.cpu_times()
                used[(process.pid, part)] = times.user + times.system
    return used


def cpu_spent(before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]) -> dict[str, float]:
    """CPU seconds each part spent between two readings (a process started since counts whole)."""
    spent = {"hub": 0.0, "nats": 0.0, "postgres": 0.0}
    for (pid, part), seconds in after.items():
        spent[part] += seconds - before.get((pid, part), 0.0)
    return spent
