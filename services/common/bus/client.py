"""nats-py's client with cheaper message headers, which every bus message carries.

Each message on the bus carries the CloudEvents attributes and its Nats-Msg-Id as six headers
(DESIGN: Contracts), and nats-py handles headers one at a time: on publish a regex match, two
strips, a translation and two encodings a header; on delivery a split, a decode, a generator over
the name's characters and a decode a header. An observation batch is published once and delivered
twice (store and alarms), so that was about a tenth of a worker's time flat out.

`BusClient` does the common case in one pass over the block: on publish, each name is checked
against the names seen before and the block built with one join; on delivery, an ASCII block
without a status line is split into lines and each line once at ": ". Anything else (a name or
value nats-py would strip, skip or rewrite, a status line, a byte outside ASCII) goes to nats-py's
own code, so the result is always the one nats-py gives; tests/unit/test_bus_client.py compares
the two.
"""

from __future__ import annotations

import re

from nats.aio.client import Client
from nats.errors import BadSubjectError
from nats.protocol.command import hpub_cmd

# A header name nats-py sends and reads unchanged: a token (RFC 7230; nats-py's own check).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEAD = b"NATS/1.0\r\n"
_HEAD_LEN = len(_HEAD)
_TAIL = b"\r\n\r\n"
# What bytes.strip() strips, as nats-py strips the values it reads.
_ASCII_SPACE = " \t\n\r\x0b\x0c"
# Names found to be tokens: a handful (the CloudEvents attributes, Nats-Msg-Id), bounded anyway.
_tokens: set[str] = set()


def _is_token(name: str) -> bool:
    if name in _tokens:
        return True
    if _TOKEN.fullmatch(name) is None:
        return False
    if len(_tokens) < 256:
        _tokens.add(name)
    return True


def header_block(headers: dict[str, str]) -> bytes | None:
    """The header block nats-py would send for `headers`, or None when nats-py must build it
    (a name that is not a token, a value it would strip or whose CR or LF it would replace)."""
    for name, value in headers.items():
        if not _is_token(name) or value != value.strip() or "\r" in value or "\n" in value:
            return None
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    return b"%b%b\r\n" % (_HEAD, lines.encode())


def read_headers(block: bytes) -> dict[str, str] | None:
    """The headers of a delivered block, or None when nats-py must read it: a status line
    ("NATS/1.0 503"), a byte outside ASCII, a line not `token: value` with the value unstripped."""
    if not block.startswith(_HEAD) or not block.endswith(_TAIL) or not block.isascii():
        return None
    out: dict[str, str] = {}
    for line in block[_HEAD_LEN : -len(_TAIL)].decode("ascii").split("\r\n"):
        name, sep, value = line.partition(": ")
        if not sep or not _is_token(name) or value != value.strip(_ASCII_SPACE):
            return None
        out[name] = value
    return out


class BusClient(Client):
    """nats-py's Client; headers are built and read in one pass when nats-py would not change them."""

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, str] | None,
    ) -> None:
        block = header_block(headers) if headers else None
        if block is None:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        # What nats-py's _send_publish does after building the block.
        if subject == "":
            raise BadSubjectError
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(hpub_cmd(subject, reply, block, payload))
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        if headers:
            read = read_headers(headers)
            if read is not None:
                return read or None
        parsed: dict[str, str] | None = await super()._process_headers(headers)
        return parsed
