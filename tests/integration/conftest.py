"""Fixtures of the integration tests beyond the suite-wide ones in tests/conftest.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from tests.integration.private_postgres import PrivatePostgres


@pytest.fixture(scope="module")
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    postgres = PrivatePostgres()
    await postgres.start()
    yield postgres
    await postgres.server.stop()
    shutil.rmtree(postgres.data_dir, ignore_errors=True)
