"""The OPC UA bridge's configuration: `ingest.opcua.file` in the hub's config names a file of its
own listing the servers and, per server, the subscriptions and the node ids they watch.

```yaml
# hub.yaml
ingest:
  opcua:
    file: opcua.yaml              # relative to the hub's config file

# opcua.yaml
servers:
  - name: dcs-cdu                 # names the server in /readyz peers, metrics and observation ids
    endpoint: opc.tcp://dcs-cdu.plant.example:4840
    security:                     # omitted: policy None, mode None
      policy: Basic256Sha256
      mode: SignAndEncrypt
      certificate: certs/hub-cert.der     # the hub's application certificate and key
      private_key: certs/hub-key.pem
      server_certificate: certs/dcs.der   # optional: the server certificate to trust
    username: hub                 # optional; with password or password_file
    password_file: secrets/dcs-cdu
    site: ulsan-refinery          # default for the nodes below
    subscriptions:
      - publishing_interval_ms: 1000
        sampling_interval_ms: 250
        deadband: {absolute: 0.5} # or {percent: 2.0} (of the node's EURange)
        nodes:
          - {node: "ns=2;s=CDU1.GD101.H2S", device: gd-cdu1-101, kind: gas.h2s, unit: ppm}
          - {node: "ns=2;i=1042", device: gd-cdu1-102, kind: gas.lel, deadband: {absolute: 1}}
```

A file of its own (not a section of hub.yaml) because a DCS exports hundreds of tags: the list is
kept beside the site files and checked against the site registry at start-up, so an unknown site,
device or kind stops start-up naming this file, the line and the key, like any config error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from asyncua import ua
from asyncua.ua.uaerrors import UaStringParsingError

from services.common.config.source import SourceFile
from services.common.config.yaml_loader import load_yaml_file_with_lines
from services.common.settings import PositiveFloat
from services.common.sites.registry import SiteRegistry
from services.common.types import DeviceId, Kind, Slug
from services.common.validation import PathPart

# The string forms of a node id the bridge accepts: numeric (`i=`), string (`s=`), GUID (`g=`)
# and opaque (`b=`), with an optional namespace index (OPC UA Part 6, 5.3.1.10).
_NODE_ID = re.compile(
    r"^(ns=(?P<ns>\d{1,5});)?"
    r"(i=\d{1,10}|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|b=[A-Za-z0-9+/]+={0,2})\Z",
    re.DOTALL,
)
_MAX_UINT32 = (1 << 32) - 1
_NS_MAX = 65535

Interval = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]


def check_node_id(text: str) -> None:
    """Raises ValueError unless `text` is a node id in its string form (`ns=2;s=...`, `ns=2;i=...`)."""
    match = _NODE_ID.match(text)
    if match is None:
        raise ValueError(f"node: {text!r} is not a node id such as 'ns=2;s=CDU1.GD101.H2S' or 'ns=2;i=1042'")
    if match.group("ns") is not None and int(match.group("ns")) > _NS_MAX:
        raise ValueError(f"node: {text!r}: the namespace index is above {_NS_MAX}")
    identifier = text.split(";", 1)[-1] if match.group("ns") is not None else text
    if identifier.startswith("i=") and int(identifier[2:]) > _MAX_UINT32:
        raise ValueError(f"node: {text!r}: a numeric identifier is at most {_MAX_UINT32}")
    try:  # what the client will send: refused now rather than at every connection
        ua.NodeId.from_string(text)
    except (ValueError, UaStringParsingError) as err:
        raise ValueError(f"node: {text!r} is not a node id: {err}") from err


class Deadband(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A DataChangeFilter's deadband: a change smaller than this is not reported by the server."""

    absolute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Percent of the node's EURange (the server refuses it for a node without one).
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None

    def __post_init__(self) -> None:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("deadband: give absolute or percent, one of the two")


class NodeMap(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One node id and the observation its values become."""

    node: str
    device: DeviceId
    kind: Kind
    site: Slug | None = None  # the server's `site` when not given
    unit: str | None = None  # checked against the registry's unit of the device's kind
    # Per node, over the subscription's.
    sampling_interval_ms: Interval | None = None
    deadband: Deadband | None = None

    def __post_init__(self) -> None:
        check_node_id(self.node)


class SubscriptionConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One OPC UA subscription: the nodes the server reports together at one publishing interval."""

    publishing_interval_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] = 1000.0
    # 0: as fast as the server samples; the server revises both to what it supports.
    sampling_interval_ms: Interval = 500.0
    deadband: Deadband | None = None
    # Values the server queues per node between publishes (a burst faster than publishing).
    queue_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    nodes: list[NodeMap]

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("nodes: list at least one node id")


class SecurityConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    # Paths relative to this file: the hub's application certificate (DER or PEM) and its key.
    certificate: str | None = None
    private_key: str | None = None
    # The server's certificate to trust; not given, the one the server presents is taken.
    server_certificate: str | None = None

    def __post_init__(self) -> None:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                "security: policy None goes with mode None, Basic256Sha256 with Sign or SignAndEncrypt"
            )
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"security: policy {self.policy} needs certificate and private_key")


class ReconnectConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The wait after a lost connection doubles from `min_s` up to `max_s`.
    min_s: PositiveFloat = 0.5
    max_s: PositiveFloat = 30.0


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: Slug
    endpoint: str
    security: SecurityConfig = SecurityConfig()
    username: str | None = None
    password: str | None = None
    password_file: str | None = None  # relative to this file
    # None: the owner of each node's site in the registry; given, another tenant's site is refused.
    tenant: Slug | None = None
    site: Slug | None = None
    # A request's answer waits this long; the keep-alive read of the server's state, every
    # timeout_s / 2, unanswered within timeout_s / 2 counts the connection as lost.
    timeout_s: Annotated[float, msgspec.Meta(ge=1, le=600)] = 10.0
    subscriptions: list[SubscriptionConfig]

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://") or len(self.endpoint) <= len("opc.tcp://"):
            raise ValueError(f"endpoint: {self.endpoint!r} is not opc.tcp://host[:port][/path]")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.username is None and (self.password is not None or self.password_file is not None):
            raise ValueError("a password needs a username")
        if not self.subscriptions:
            raise ValueError("subscriptions: list at least one subscription")
        seen: set[str] = set()
        for subscription in self.subscriptions:
            for node in subscription.nodes:
                if node.node in seen:
                    raise ValueError(f"node {node.node!r} is listed twice")
                seen.add(node.node)
                if node.site is None and self.site is None:
                    raise ValueError(f"node {node.node!r}: no site (give the server's `site` or the node's)")


class OpcuaFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    servers: list[ServerConfig]
    reconnect: ReconnectConfig = ReconnectConfig()

    def __post_init__(self) -> None:
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("servers: a server name is listed twice")
        if not names:
            raise ValueError("servers: list at least one server")


class OpcuaConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The `ingest.opcua:` section of the hub's config; the bridge is off without a file."""

    file: str | None = None

    @property
    def enabled(self) -> bool:
        return self.file is not None


@dataclass(frozen=True, slots=True)
class LoadedOpcua:
    config: OpcuaFile
    # Per server name.
    credentials: dict[str, Credentials]


def load_opcua_file(path: Path, registry: SiteRegistry) -> LoadedOpcua:
    """The file parsed strictly, checked against the site registry, its secrets read; a
    ConfigError names the file, line and key of the first problem."""
    loaded, lines = load_yaml_file_with_lines(path, OpcuaFile)
    source = SourceFile(str(path), lines)
    check_against_registry(loaded, registry, source)
    credentials = {
        server.name: _credentials(server, path.parent, source, ("servers", s))
        for s, server in enumerate(loaded.servers)
    }
    return LoadedOpcua(loaded, credentials)


def check_against_registry(loaded: OpcuaFile, registry: SiteRegistry, source: SourceFile) -> None:
    for s, server in enumerate(loaded.servers):
        for k, subscription in enumerate(server.subscriptions):
            for n, node in enumerate(subscription.nodes):
                _check_node(server, node, registry, source, ("servers", s, "subscriptions", k, "nodes", n))


def _check_node(
    server: ServerConfig, node: NodeMap, registry: SiteRegistry, source: SourceFile, path: Sequence[PathPart]
) -> None:
    site = node.site or server.site or ""
    where: tuple[PathPart, ...] = (*path, "site") if node.site else ("servers", path[1], "site")
    owner = registry.tenant_of(site)
    if owner is None:
        raise source.error(where, f"unknown site '{site}' (not in the site registry)")
    if server.tenant is not None and owner != server.tenant:
        raise source.error(where, f"site '{site}' is not a site of tenant '{server.tenant}'")
    if registry.device(site, node.device) is None:
        raise source.error((*path, "device"), f"device '{node.device}' is not registered at site '{site}'")
    measure = registry.measure(site, node.device, node.kind)
    if measure is None:
        raise source.error((*path, "kind"), f"device '{node.device}' does not measure '{node.kind}'")
    if node.unit is not None and node.unit != measure.unit:
        raise source.error(
            (*path, "unit"), f"'{node.kind}' of '{node.device}' is in '{measure.unit}', not '{node.unit}'"
        )


def _readable(base: Path, name: str, source: SourceFile, path: Sequence[PathPart]) -> Path:
    file = Path(name) if Path(name).is_absolute() else base / name
    try:
        with file.open("rb"):
            pass
    except OSError as err:
        raise source.error(path, f"cannot read {file}: {err.strerror}") from err
    return file


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a server's connection needs from files, read once at start-up."""

    password: str | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None


def _credentials(
    server: ServerConfig, base: Path, source: SourceFile, at: tuple[PathPart, ...]
) -> Credentials:
    password = server.password
    if server.password_file is not None:
        file = _readable(base, server.password_file, source, (*at, "password_file"))
        password = file.read_text(encoding="utf-8").strip()
    security = server.security

    def optional(name: str | None, key: str) -> Path | None:
        return None if name is None else _readable(base, name, source, (*at, "security", key))

    return Credentials(
        password,
        optional(security.certificate, "certificate"),
        optional(security.private_key, "private_key"),
        optional(security.server_certificate, "server_certificate"),
    )
