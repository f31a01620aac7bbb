"""An OPC UA server for the bridge's tests: asyncua's own server on loopback (real TCP), with a
folder of Double variables under `ns=2;s=<tag>`, as a DCS's OPC UA gateway exposes its tags."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

NAMESPACE = "urn:safetyhub:test-plant"
PLANT_URI = "urn:safetyhub:test-plant:server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def certificate(directory: Path, name: str, uri: str, *, server: bool) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and its key (PEM), as OPC UA wants them."""
    cert, key = directory / f"{name}-cert.der", directory / f"{name}-key.pem"
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    await setup_self_signed_certificate(
        key, cert, uri, "127.0.0.1", use, {"organizationName": "safetyhub tests"}
    )
    return cert, key


class _Passwords(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User)
        return None


class PlantServer:
    """Variables (`ns=2;s=...` -> first value); `stop` and `start` again on the same port."""

    def __init__(
        self,
        initial: dict[str, float],
        *,
        at: datetime,
        port: int | None = None,
        secure: tuple[Path, Path] | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        """`secure` (certificate, key): Basic256Sha256 with SignAndEncrypt only; `users`: user
        names and passwords, the only way in (no anonymous sessions)."""
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/plant/"
        self._initial = initial
        self._at = at
        self._server: Server | None = None
        self._variables: dict[str, Node] = {}
        self._secure = secure
        self._users = users

    async def start(self) -> None:
        server = Server(user_manager=_Passwords(self._users) if self._users is not None else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        if self._secure is not None:
            await server.set_application_uri(PLANT_URI)
            await server.load_certificate(self._secure[0])
            await server.load_private_key(self._secure[1])
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self._users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        index = await server.register_namespace(NAMESPACE)
        assert index == 2  # the node ids of the tests' config say ns=2
        folder = await server.nodes.objects.add_object(index, "Plant")
        for node_id, value in self._initial.items():
            node = ua.NodeId.from_string(node_id)
            variable = await folder.add_variable(
                node, str(node.Identifier), ua.Variant(value, ua.VariantType.Double)
            )
            await variable.write_value(self._data(value, self._at))  # with the test's timestamps
            self._variables[node_id] = variable
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    @staticmethod
    def _data(value: float, at: datetime, status: int = ua.StatusCodes.Good) -> ua.DataValue:
        return ua.DataValue(
            ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=at.astimezone(UTC),
            ServerTimestamp=at.astimezone(UTC),
        )

    async def write(
        self, node_id: str, value: float, at: datetime, status: int = ua.StatusCodes.Good
    ) -> None:
        await self._variables[node_id].write_value(self._data(value, at, status))


def opcua_file(tmp: Path, endpoint: str, nodes: str, *, name: str = "dcs-cdu", extra: str = "") -> Path:
    """A bridge file for one server at `endpoint`; `nodes` are the YAML list items of its
    one subscription (publishing every 50 ms, sampling as the server writes)."""
    path = tmp / f"opcua-{name}.yaml"
    path.write_text(
        "reconnect: {min_s: 0.2, max_s: 1.0}\n"
        "servers:\n"
        f"  - name: {name}\n"
        f"    endpoint: {endpoint}\n"
        "    site: ulsan-refinery\n"
        "    timeout_s: 2\n"
        f"{extra}"
        "    subscriptions:\n"
        "      - publishing_interval_ms: 50\n"
        "        sampling_interval_ms: 0\n"
        "        nodes:\n"
        f"{nodes}",
        encoding="utf-8",
    )
    return path
