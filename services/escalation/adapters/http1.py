"""A small HTTP/1.1 client for webhook POSTs: keep-alive connections per origin, a request written
in one piece, and of the answer only what decides the next attempt (status, reason, Retry-After).

A general client (aiohttp) spent more CPU per request than the rest of a delivery together, for
features a webhook does not use (cookies, redirects, decompression, streaming bodies, proxies).
What the answer says after its head decides nothing, so a connection is kept only when its
answer is framed by Content-Length (at most `MAX_ANSWER_BYTES`, read out) or has no body, and
the receiver did not ask to close; any other answer (chunked, read to the close, too long) is
taken from its head and its connection closed.

A kept connection the receiver has closed (its idle timeout) is seen closed and not used again.
One it closes while a request is on its way is that attempt failing, retried on the schedule like
any other: closing without an answer is also what a failing receiver does, and the two cannot be
told apart.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

MAX_ANSWER_BYTES = 64 * 1024
# An idle connection is dropped after this long (a receiver's own idle timeout is often 5 to 75 s:
# a request on one it already closed is sent again, so this only bounds what is held open).
IDLE_S = 15.0
# Idle connections kept per origin; the engine bounds how many are busy at once.
MAX_IDLE_PER_ORIGIN = 64
_NO_BODY = frozenset({204, 304})


class BadAnswer(Exception):
    """The receiver answered something that is not an HTTP/1.x answer."""


class ConnectTimeout(TimeoutError):
    """No connection to the receiver within the connect timeout."""


class Disconnected(Exception):
    """The connection ended before a whole answer's head came."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class _Origin:
    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    target: bytes  # path and query, as sent on the request line
    host_header: bytes


@functools.lru_cache(maxsize=1024)
def _origin(url: str) -> _Origin:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http or https URL: {url}")
    host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
    name = f"[{host}]" if ":" in host else host
    default = port == (443 if parsed.scheme == "https" else 80)
    return _Origin(
        key=(parsed.scheme, host, port),
        host=host,
        port=port,
        tls=parsed.scheme == "https",
        target=(parsed.raw_path_qs or "/").encode("ascii"),
        host_header=(name if default else f"{name}:{port}").encode("idna" if not host.isascii() else "ascii"),
    )


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes, or the end: none must be pending."""
        if self.ended:
            raise Disconnected("the receiver closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.ended = True
        if self.transport is not None:
            self.transport.close()

    def usable(self, now: float) -> bool:
        return not self.ended and not self.buffer and now - self.idle_since < IDLE_S


class Client:
    """Keep-alive HTTP/1.1 POSTs. `post` raises `ConnectTimeout`, OSError (refused, reset, TLS),
    `Disconnected` or `BadAnswer`; the caller bounds its whole time and makes each an attempt's
    error."""

    def __init__(self, *, connect_timeout_s: float) -> None:
        self._connect_timeout = connect_timeout_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._swept = time.monotonic()

    async def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        origin = _origin(url)
        head = self._head(origin, body, headers)
        conn = await self._acquire(origin)
        try:
            reply, keep = await self._exchange(conn, head, body)
        except BaseException:
            self._drop(conn)
            raise
        if keep:
            self._release(origin, conn)
        else:
            self._drop(conn)
        return reply

    @staticmethod
    def _head(origin: _Origin, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            origin.target,
            origin.host_header,
            len(body),
            lines.encode(),
        )

    async def _acquire(self, origin: _Origin) -> _Connection:
        now = time.monotonic()
        if now - self._swept > IDLE_S:
            self._sweep(now)
        idle = self._idle.get(origin.key)
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            self._drop(conn)
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        try:
            name = origin.host if tls else None
            connecting = loop.create_connection(
                _Connection, origin.host, origin.port, ssl=tls, server_hostname=name
            )
            _, conn = await asyncio.wait_for(connecting, self._connect_timeout)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {self._connect_timeout:g} s") from None
        self._open.add(conn)
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _release(self, origin: _Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin.key, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN or conn.ended:
            self._drop(conn)
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if c.usable(now)]
            for conn in idle:
                if conn not in keep:
                    self._drop(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes) -> tuple[Reply, bool]:
        if conn.transport is None or conn.ended:
            raise Disconnected("the receiver closed the connection")
        conn.transport.write(head + body)
        while True:
            end = conn.buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(conn.buffer) > MAX_ANSWER_BYTES:
                    raise BadAnswer("an answer head over 64 KiB")
                await conn.more()
                end = conn.buffer.find(b"\r\n\r\n")
            status, reason, version, fields = _parse_head(bytes(conn.buffer[:end]))
            del conn.buffer[: end + 4]
            if 100 <= status < 200:
                continue  # informational (a 100 Continue not asked for): the answer follows
            break
        keep = version == b"HTTP/1.1" or fields.get("connection", "").lower() == "keep-alive"
        if "close" in fields.get("connection", "").lower():
            keep = False
        if status not in _NO_BODY:
            keep = keep and await self._read_body(conn, fields)
        if conn.buffer:
            keep = False  # more than one answer: not a receiver to trust with the next request
        return Reply(status, reason, fields.get("retry-after")), keep

    @staticmethod
    async def _read_body(conn: _Connection, fields: Mapping[str, str]) -> bool:
        """Read a Content-Length body out; False when the connection cannot be kept."""
        if "transfer-encoding" in fields or "content-length" not in fields:
            return False
        try:
            length = int(fields["content-length"])
        except ValueError:
            return False
        if not 0 <= length <= MAX_ANSWER_BYTES:
            return False
        while len(conn.buffer) < length:
            try:
                await conn.more()
            except Disconnected:
                return False  # the head said enough
        del conn.buffer[:length]
        return True


def _parse_head(head: bytes) -> tuple[int, str, bytes, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    well_formed = len(parts) >= 2 and len(parts[1]) == 3 and parts[1].isdigit()
    if not well_formed or version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadAnswer(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadAnswer(f"not an HTTP header line: {line[:80]!r}")
        fields[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return int(parts[1]), reason, version, fields
