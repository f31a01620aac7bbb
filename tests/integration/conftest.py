"""Fixtures of the integration tests beyond the suite-wide ones in tests/conftest.py."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from services.common.bus.publisher import JetStreamPublisher
from tests.integration.private_postgres import PrivatePostgres


@pytest.fixture(scope="module")
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    postgres = PrivatePostgres()
    await postgres.start()
    yield postgres
    await postgres.server.stop()
    shutil.rmtree(postgres.data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def started_publisher(nc: NATS) -> AsyncIterator[JetStreamPublisher]:
    """The hub's publisher on a test's connection, with a short acknowledgement wait."""
    pub = JetStreamPublisher(nc, ack_timeout=2.0)
    await pub.start()
    try:
        yield pub
    finally:
        await pub.close()
