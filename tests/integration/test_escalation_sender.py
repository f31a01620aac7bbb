"""The webhook sender against real sockets: attempts in a row share one kept connection and carry
the Standard Webhooks headers and the body; Retry-After is kept; a receiver that hangs, refuses,
closes, answers garbage or shows a certificate nobody vouches for is an attempt's error."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.escalation.adapters.deliveries_db import Claimed
from services.escalation.adapters.secrets import new_secret
from services.escalation.adapters.sender import Sender

Answer = Callable[[bytes], bytes | None]  # the request's head and body -> bytes to write back, or None


class RawReceiver(asyncio.Protocol):
    """Answers each whole request (Content-Length framed) with what `answer` makes of it."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:end].decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(self._buffer) < end + 4 + length:
                return
            request, self._buffer = self._buffer[: end + 4 + length], self._buffer[end + 4 + length :]
            self._server.requests.append(request)
            reply = self._server.answer(request)
            assert self.transport is not None
            if reply is None:
                self.transport.close()
                return
            if reply:
                self.transport.write(reply)
            if self._server.close_after:
                self.transport.close()


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections: list[RawReceiver] = []
        self.close_after = False
        self.url = ""


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[Server]:
    server = Server(answer)
    listening = await asyncio.get_running_loop().create_server(lambda: RawReceiver(server), "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/hook?x=1"
    try:
        yield server
    finally:
        listening.close()
        for conn in server.connections:
            if conn.transport is not None:
                conn.transport.close()


def status(code: int, *headers: str, body: bytes = b"") -> Answer:
    lines = "".join(f"{h}\r\n" for h in headers)
    reply = f"HTTP/1.1 {code} Whatever\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body
    return lambda _: reply


async def test_attempts_in_a_row_share_one_connection_and_carry_the_headers_and_body() -> None:
    sender = Sender(connect_timeout_s=2.0, total_timeout_s=5.0)
    await sender.start()
    try:
        async with serving(status(200, body=b"ok")) as server:
            for _ in range(5):
                answer = await sender.send(delivery(server.url))
                assert (answer.status, answer.error) == (200, "Whatever")
            assert len(server.connections) == 1 and len(server.requests) == 5
            head, body = server.requests[4].split(b"\r\n\r\n")
            assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and body == b"{}"
            lowered = head.lower()
            assert b"\r\nwebhook-id: msg_1" in lowered and b"\r\nwebhook-signature: v1," in lowered
    finally:
        await sender.close()


async def test_retry_after_is_kept() -> None:
    sender = Sender(connect_timeout_s=2.0, total_timeout_s=5.0)
    await sender.start()
    try:
        async with serving(status(429, "Retry-After: 7")) as server:
            answer = await sender.send(delivery(server.url))
            assert (answer.status, answer.retry_after) == (429, "7")
    finally:
        await sender.close()


def delivery(url: str) -> Claimed:
    return Claimed(
        id="msg_1",
        tenant="t",
        endpoint_id="e",
        incident_id="i",
        site="s",
        change="opened",
        body=b"{}",
        content_type="application/json",
        attempts=0,
        created_at=datetime.now(UTC),
        url=url,
        headers={},
        secret=new_secret(),
        previous_secret=None,
        previous_until=None,
    )


async def test_hanging_closing_garbage_and_refusing_receivers_are_attempt_errors() -> None:
    sender = Sender(connect_timeout_s=1.0, total_timeout_s=0.5)
    await sender.start()
    try:
        async with serving(lambda _: b"") as hanging:
            answer = await sender.send(delivery(hanging.url))
            assert answer.status is None and "no answer within the timeout (0.5 s total)" in answer.error
        async with serving(lambda _: None) as closing:
            answer = await sender.send(delivery(closing.url))
            assert answer.status is None and "Disconnected" in answer.error
        async with serving(lambda _: b"this is not HTTP\r\n\r\n") as garbage:
            answer = await sender.send(delivery(garbage.url))
            assert answer.status is None and "ClientResponseError" in answer.error
        refused_url = closing.url  # its server is gone
        answer = await sender.send(delivery(refused_url))
        assert answer.status is None and "ClientConnectorError" in answer.error
        async with serving(status(410)) as gone:
            answer = await sender.send(delivery(gone.url))
            assert answer.status == 410
    finally:
        await sender.close()


HOST = "127.0.0.1"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_https_is_verified(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(status(202))
    listening = await asyncio.get_running_loop().create_server(
        lambda: RawReceiver(server), "127.0.0.1", 0, ssl=context
    )
    url = f"https://127.0.0.1:{listening.sockets[0].getsockname()[1]}/hook"
    try:
        # Not signed by an authority the system trusts: refused, an attempt's error, nothing sent.
        sender = Sender(connect_timeout_s=2.0, total_timeout_s=5.0)
        await sender.start()
        answer = await sender.send(delivery(url))
        await sender.close()
        assert answer.status is None and "CERTIFICATE_VERIFY_FAILED" in answer.error
        assert server.requests == []
    finally:
        listening.close()
