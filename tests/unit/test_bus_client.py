"""The bus client's one-pass headers give exactly what nats-py's own code gives, for any headers."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from services.common.bus.client import BusClient, header_block, read_headers
from services.common.contracts.cloudevents import ce_headers

SUBJECT = "obs.ulsan-refining.ulsan-refinery.gd-cdu1-101"
REPLY = "_INBOX.x.7"


class _Sent:
    """Stands in for the connection: keeps the commands a client would write to the socket."""

    def __init__(self, client: Client) -> None:
        self.commands: list[bytes] = []
        client._send_command = self._send  # type: ignore[method-assign]
        client._flush_queue = None

    async def _send(self, command: bytes, priority: bool = False) -> None:
        self.commands.append(bytes(command))


async def _published(client: Client, headers: dict[str, str] | None) -> bytes | BaseException:
    sent = _Sent(client)
    try:
        await client._send_publish(SUBJECT, REPLY, b"payload", 7, headers)
    except Exception as err:  # the same refusal from both is what matters
        return err
    (command,) = sent.commands
    return command


def _same(ours: bytes | BaseException, theirs: bytes | BaseException) -> bool:
    if isinstance(ours, BaseException) or isinstance(theirs, BaseException):
        return type(ours) is type(theirs)
    return ours == theirs


def _block(lines: list[tuple[str, str]], sep: str = ": ") -> bytes:
    return ("NATS/1.0\r\n" + "".join(f"{k}{sep}{v}\r\n" for k, v in lines) + "\r\n").encode()


CLOUD_EVENT = ce_headers(
    id="01M809PBX0FTX9PFETXWC522JZ",
    type="org.safetyhub.observation.batch.v1",
    source="/ingest/keys/3f9a1c0b7e2d",
    time="2026-11-22T00:15:00Z",
)


async def test_a_cloud_event_is_published_as_nats_py_publishes_it_without_its_slow_path() -> None:
    ours = await _published(BusClient(), CLOUD_EVENT)

    assert header_block(CLOUD_EVENT) is not None  # the one-pass path, not nats-py's
    assert ours == await _published(Client(), CLOUD_EVENT)
    assert isinstance(ours, bytes) and b"\r\nce-type: org.safetyhub.observation.batch.v1\r\n" in ours


async def test_a_delivered_cloud_event_reads_as_nats_py_reads_it() -> None:
    block = _block(list(CLOUD_EVENT.items()))

    assert read_headers(block) == CLOUD_EVENT
    assert await BusClient()._process_headers(block) == await Client()._process_headers(block) == CLOUD_EVENT


async def test_a_status_line_and_odd_lines_are_left_to_nats_py() -> None:
    blocks = [
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0\r\nbad name: x\r\nok: y\r\n\r\n",
        b"NATS/1.0\r\nno-colon\r\nok: y\r\n\r\n",
        "NATS/1.0\r\nsource: /keys/\u00e9t\u00e9\r\n\r\n".encode(),
        b"NATS/1.0\r\nk: \xff\xfe\r\n\r\n",
        b"NATS/1.0\r\n  k  :  spaced \t\r\n\r\n",
        b"NATS/1.0\r\nk:v\r\nk: again\r\n\r\n",
        b"NATS/1.0\r\n\r\n",
    ]
    for block in blocks:
        assert await BusClient()._process_headers(block) == await Client()._process_headers(block), block


_NAMES = st.text(alphabet=st.characters(codec="ascii"), min_size=0, max_size=8) | st.sampled_from(
    ["Nats-Msg-Id", "ce-id", "ce-source", "Status", "a b", " k", "k ", "k:"]
)
_VALUES = st.text(max_size=12) | st.sampled_from(["", " x", "x ", "a\r\nb", "a\nb", "\u00e9", "\x1c", "\x0b"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=6))
async def test_any_headers_are_published_byte_for_byte_as_nats_py_would(headers: dict[str, str]) -> None:
    assert _same(await _published(BusClient(), headers), await _published(Client(), headers))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
    st.sampled_from([": ", ":", " : ", ":\t", ":  "]),
)
async def test_any_delivered_headers_read_as_nats_py_reads_them(
    lines: list[tuple[str, str]], sep: str
) -> None:
    block = _block(lines, sep)
    ours: Any = await BusClient()._process_headers(block)
    theirs: Any = await Client()._process_headers(block)
    assert ours == theirs
