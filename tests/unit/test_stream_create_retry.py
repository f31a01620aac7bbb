"""Creating a stream whose namesake was deleted a moment ago: JetStream answers "error creating
store for stream" while it still removes the old files; the hub tries again rather than failing
its start, and gives up on anything else at once."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import ServerError

from services.common.bus import streams


class FlakyJetStream:
    def __init__(self, failures: int, err_code: int = 10049) -> None:
        self.failures = failures
        self.err_code = err_code
        self.calls = 0

    async def add_stream(self, config: StreamConfig) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise ServerError(code=500, err_code=self.err_code, description="error creating store for stream")
        return config


async def test_a_store_still_being_removed_is_waited_for() -> None:
    js = FlakyJetStream(failures=2)
    await streams._create(js, StreamConfig(name="OBSERVATIONS"))  # type: ignore[arg-type]
    assert js.calls == 3


async def test_another_server_error_is_not_retried() -> None:
    js = FlakyJetStream(failures=1, err_code=10047)
    with pytest.raises(ServerError):
        await streams._create(js, StreamConfig(name="OBSERVATIONS"))  # type: ignore[arg-type]
    assert js.calls == 1


async def test_it_gives_up_after_a_few_tries() -> None:
    js = FlakyJetStream(failures=99)
    with pytest.raises(ServerError):
        await streams._create(js, StreamConfig(name="OBSERVATIONS"))  # type: ignore[arg-type]
    assert js.calls == streams._CREATE_TRIES
