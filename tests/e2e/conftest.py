"""What every end-to-end test shares: a work dir the hub's unprivileged account can reach, and
no server left running behind a failed test."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import reachable_temp_dir


def processes_under(path: Path) -> list[psutil.Process]:
    """The processes whose command line names `path` (a hub, its workers and servers)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(path) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = reachable_temp_dir("safetyhub-e2e-")
    yield path
    for proc in processes_under(path):  # a failed test must not leave servers running
        with contextlib.suppress(psutil.Error):
            proc.kill()
    shutil.rmtree(path, ignore_errors=True)
