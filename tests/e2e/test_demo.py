"""`safetyhub demo` as a newcomer runs it: the commands it prints work when pasted."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_SITES, REPO, eventually

pytestmark = pytest.mark.e2e



async def run_pasted(command: str) -> tuple[int, str]:
    """Runs a printed curl command as a shell would, and returns the HTTP status and the body."""
    argv = shlex.split(command)
    assert argv[0] == "curl"
    proc = await asyncio.create_subprocess_exec(
        *argv, "-w", "\n%{http_code}", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), body


def start_demo(workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    config = workdir / "hub.yaml"
    config.write_text(f"sites: ['{DEMO_SITES}']\n")
    command = [sys.executable, "-m", "services.hub.cli", "demo", "--plain", "--http-port", "0"]
    command += ["--data-dir", str(workdir / "data"), "--config", str(config)]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


async def test_the_printed_keys_and_commands_work(workdir: Path) -> None:
    log = workdir / "demo.log"
    proc = start_demo(workdir, log)
    try:

        async def ready() -> dict[str, Any] | None:
            assert proc.poll() is None, f"demo exited with {proc.returncode}: {log.read_text()[-2000:]}"
            for line in log.read_text().splitlines():
                if '"demo_ready"' in line:
                    event: dict[str, Any] = json.loads(line)
                    return event
            return None

        info = await eventually(ready, timeout=120, what="the demo's ready line")
        assert info["gateway_key_(ulsan-refining)"].startswith("shk_")
        assert info["viewer_key_(ulsan-refining)"].startswith("shk_")

        status, body = await run_pasted(info["post"])
        assert status == 202, body
        answer = json.loads(body)
        assert len(answer["accepted"]) == 1 and answer["rejected"] == []

        status, body = await run_pasted(info["read"])
        assert status == 200, body
        status, body = await run_pasted(f"curl -sS {shlex.quote(info['api_docs'])}")
        assert status == 200 and "/openapi.json" in body
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
