"""`safetyhub` as a user first meets it: start-up mistakes end in one clear line, not a traceback.

Real processes: started from another directory (no site file there), or on an HTTP port that is
taken, `up` must stop before it starts NATS or PostgreSQL and say what to do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO_SITES, reachable_temp_dir

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "services.hub.cli"]


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A directory outside the checkout, where no `sites/` exists."""
    path = reachable_temp_dir("safetyhub-cli-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    # The embedded runtime is what these tests are about: no external servers.
    env = dict(os.environ)
    for name in ("SAFETYHUB_NATS_URL", "SAFETYHUB_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def _safetyhub(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [*CLI, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120, check=False
    )
    return result, time.monotonic() - started


def test_up_from_another_directory_stops_naming_the_paths_it_looked_at(elsewhere: Path) -> None:
    data = elsewhere / "data"

    result, _ = _safetyhub(elsewhere, "up", "--data-dir", str(data), "--http-port", "0")

    assert result.returncode == 2, result.stderr
    assert str(elsewhere / "sites" / "*.yaml") in result.stderr
    assert "--config" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not data.exists(), "no server may start without sites"


def test_a_config_whose_site_files_declare_no_site_stops_start_up(elsewhere: Path) -> None:
    (elsewhere / "sites").mkdir()
    tenants_only = elsewhere / "sites" / "tenants.yaml"
    tenants_only.write_text("version: 1\ntenants:\n  - {id: acme, name: Acme}\n")
    config = elsewhere / "hub.yaml"
    config.write_text("sites: ['sites/*.yaml']\n")

    result, _ = _safetyhub(elsewhere, "up", "--data-dir", str(elsewhere / "data"), "--config", str(config))

    assert result.returncode == 2, result.stderr
    assert "declare no site" in result.stderr
    assert str(tenants_only) in result.stderr
    assert not (elsewhere / "data").exists()


def test_up_on_a_taken_port_says_which_flag_to_use_before_starting_anything(elsewhere: Path) -> None:
    config = elsewhere / "hub.yaml"
    config.write_text(f"sites: ['{DEMO_SITES}']\n")
    data = elsewhere / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result, took = _safetyhub(
            elsewhere, "up", "--data-dir", str(data), "--config", str(config), "--http-port", str(port)
        )

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"safetyhub: port {port} on 127.0.0.1 is in use;"
        " choose another with --http-port PORT (or http.port in the config)"
    )
    assert not data.exists(), "the embedded servers were prepared before the port was checked"
    # Starting the embedded servers takes seconds; the check alone takes a Python start-up.
    assert took < 30
