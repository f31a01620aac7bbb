"""Sparkplug B edge nodes to observations: births, data by alias, deaths, sequence checks.
Pure: the time is a parameter; the bridge publishes what this returns (and the rebirth command).

Topics are `spBv1.0/<group>/<type>/<edge node>[/<device>]`. Per edge node the reader keeps what
its births declared: alias -> metric name, the metrics each device was born with, the next
sequence number (0..255, counted over NBIRTH, DBIRTH, NDATA, DDATA and DDEATH) and the birth's
bdSeq. As the specification asks of a host application, a sequence gap, data from a node or
device not born, or an alias never born asks the node for a rebirth (NCMD `Node
Control/Rebirth`), at most once per `rebirth_interval_s`. NDEATH and DDEATH become comm-loss
observations (quality bad, no value) for every mapped metric of the devices they take down; an
NDEATH whose bdSeq is not the birth's is a stale will message and changes nothing. The values of
a message after a gap are kept (each names its metric); what cannot be used (an alias never born,
a metric that carries no number) is a problem, for the dead-letter stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from google.protobuf.message import DecodeError

from services.common.contracts.sparkplug import SparkplugMetric, SparkplugPayload
from services.ingest.bridges.mqtt_mapping import Unmapped
from services.ingest.bridges.sparkplug_config import SparkplugConfig, SparkplugGroup
from services.ingest.domain.checks import Checked
from services.ingest.domain.contract import ObservationIn, QualityName

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
_BOOLEAN = 11
# Datatypes whose value is a number the hub can store (1..8 integers, float, double, boolean).
_SIGNED_32 = {1: 8, 2: 16, 3: 32}  # Int8, Int16, Int32: two's complement in int_value
_INT64 = 4
_NUMERIC = frozenset(range(1, 12))
_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "DCMD")


@dataclass(slots=True)
class _Node:
    born: bool = False
    seq: int = -1
    bd_seq: int | None = None
    aliases: dict[int, str] = field(default_factory=dict)
    # Sparkplug device ("" for the node's own metrics) -> names of the metrics it was born with.
    devices: dict[str, set[str]] = field(default_factory=dict)
    rebirth_asked: float | None = None
    # Restored after a restart: the sequence number is not kept (it changes with every message),
    # so the first one seen is taken as it is.
    resync: bool = False


class _Births(msgspec.Struct, frozen=True):
    """What a node's births declared, as kept between restarts (see `SparkplugReader.export`)."""

    group: str
    edge: str
    born: bool
    bd_seq: int | None
    aliases: dict[int, str]
    devices: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class NodeId:
    group: str
    edge: str


@dataclass(frozen=True, slots=True)
class Command:
    """An MQTT message to an edge node (a rebirth request)."""

    topic: str
    payload: bytes


@dataclass(slots=True)
class Outcome:
    """What one message became: observations to check and publish, the reasons to dead-letter
    it with (something of it could not be used), and a rebirth command to send."""

    tenant: str | None = None
    # The node whose births this message changed: its state is to be kept.
    changed: NodeId | None = None
    items: list[ObservationIn] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rebirth: Command | None = None
    # Why the reader's view of the node is out of step with it (a gap, no birth, an unknown
    # alias): a rebirth is asked for. Only what could not be used is also a problem.
    out_of_step: list[str] = field(default_factory=list)

    def lost(self, reason: str, *, unusable: bool = False) -> None:
        self.out_of_step.append(reason)
        if unusable:
            self.problems.append(reason)


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _number(metric: SparkplugMetric, datatype: int) -> float | None:
    """The metric's value as a number, or None when it has none (or not a number)."""
    kind = metric.WhichOneof("value")
    if kind == "int_value":
        raw = metric.int_value
        bits = _SIGNED_32.get(datatype)
        if bits is not None:  # the specification carries signed values as their two's complement
            raw &= (1 << bits) - 1
            return float(raw - (1 << bits) if raw >= 1 << (bits - 1) else raw)
        return float(raw)
    if kind == "long_value":
        raw = metric.long_value
        return float(raw - (1 << 64) if datatype == _INT64 and raw >= 1 << 63 else raw)
    if kind == "float_value":
        return float(metric.float_value)
    if kind == "double_value":
        return metric.double_value
    if kind == "boolean_value":
        return 1.0 if metric.boolean_value else 0.0
    return None


def _quality(metric: SparkplugMetric) -> QualityName:
    """The OPC quality code a metric may carry as its `Quality` property (192 good, 64..191
    uncertain, below 64 bad); good when it carries none."""
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key.lower() == "quality" and value.WhichOneof("value") in ("int_value", "long_value"):
            code = value.int_value if value.WhichOneof("value") == "int_value" else value.long_value
            if 192 <= code < 256:
                return "good"
            return "uncertain" if 64 <= code < 192 else "bad"
    return "good"


def rebirth_command(group: str, edge: str, now: datetime) -> Command:
    """The NCMD asking edge node `edge` of `group` to publish its births again."""
    payload = SparkplugPayload()
    stamp = int(now.timestamp() * 1000)
    payload.timestamp = stamp
    metric = payload.metrics.add()
    metric.name = REBIRTH_METRIC
    metric.timestamp = stamp
    metric.datatype = _BOOLEAN
    metric.boolean_value = True
    return Command(f"{NAMESPACE}/{group}/NCMD/{edge}", payload.SerializeToString())


@dataclass(frozen=True, slots=True)
class _Message:
    """One message being read: where it comes from and what it becomes."""

    group: SparkplugGroup
    edge: str
    device: str  # "" for the edge node's own metrics
    node: _Node
    sent: datetime  # the payload's timestamp, or the time it arrived
    out: Outcome

    def hub_device(self, device: str | None = None) -> str:
        sparkplug = self.device if device is None else device
        key = f"{self.edge}/{sparkplug}" if sparkplug else self.edge
        return self.group.devices.get(key, sparkplug or self.edge)


class SparkplugReader:
    def __init__(self, config: SparkplugConfig) -> None:
        self._config = config
        self._groups = {g.group: g for g in config.groups}
        self._nodes: dict[tuple[str, str], _Node] = {}

    @property
    def subscriptions(self) -> list[str]:
        return [f"{NAMESPACE}/{group}/#" for group in sorted(self._groups)]

    def export(self, node_id: NodeId) -> bytes:
        """The births of a node, to keep across a restart (`restore` reads them back)."""
        node = self._nodes.get((node_id.group, node_id.edge), _Node())
        devices = {device: sorted(names) for device, names in node.devices.items()}
        births = _Births(node_id.group, node_id.edge, node.born, node.bd_seq, node.aliases, devices)
        return msgspec.json.encode(births)

    def restore(self, data: bytes) -> None:
        births = msgspec.json.decode(data, type=_Births)
        self._nodes[(births.group, births.edge)] = _Node(
            born=births.born,
            bd_seq=births.bd_seq,
            aliases=dict(births.aliases),
            devices={device: set(names) for device, names in births.devices.items()},
            resync=True,
        )

    @staticmethod
    def accepts(topic: str) -> bool:
        return topic.startswith(NAMESPACE + "/")

    def read(self, topic: str, data: bytes, now: datetime, clock: float) -> Outcome:
        """The observations of one message; `clock` is a monotonic time (rebirth rate limit).

        Raises Unmapped when nothing of the message can be used (a topic outside the configured
        groups, a payload that does not decode)."""
        parts = topic.split("/")
        if len(parts) == 3 and parts[1] == "STATE":
            return Outcome()  # a host application's own state: nothing to store
        if len(parts) not in (4, 5) or parts[2] not in _TYPES:
            raise Unmapped("unmatched_topic", f"'{topic[:200]}' is not a Sparkplug B topic")
        _, group_id, kind, edge = parts[:4]
        group = self._groups.get(group_id)
        if group is None:
            raise Unmapped("unmatched_topic", f"Sparkplug group '{group_id}' is not configured")
        if kind in ("NCMD", "DCMD"):
            return Outcome()  # commands to edge nodes (ours among them): not readings
        try:
            payload = SparkplugPayload.FromString(data)
        except DecodeError as err:
            raise Unmapped("malformed", f"not a Sparkplug B payload: {err}") from err
        node = self._nodes.setdefault((group_id, edge), _Node())
        sent = _moment(payload.timestamp) if payload.HasField("timestamp") else now
        msg = _Message(group, edge, parts[4] if len(parts) == 5 else "", node, sent, Outcome(group.tenant))
        if kind in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH"):
            msg.out.changed = NodeId(group_id, edge)
        if kind == "NDEATH":
            self._death(msg, payload)
            return msg.out
        if kind == "NBIRTH":
            node.born, node.seq, node.aliases, node.devices = True, payload.seq, {}, {"": set()}
            node.resync = False
            node.bd_seq = next((int(m.long_value) for m in payload.metrics if m.name == "bdSeq"), None)
        else:
            self._check_sequence(msg, payload)
        if kind == "DDEATH":
            names = node.devices.pop(msg.device, set())
            self._comm_loss(msg, msg.device, names, f"DDEATH of device '{msg.device}'")
        else:
            self._values(msg, kind, payload)
        if msg.out.out_of_step:
            self._ask_rebirth(msg, now, clock)
        return msg.out

    def _check_sequence(self, msg: _Message, payload: SparkplugPayload) -> None:
        node = msg.node
        if not node.born:
            msg.out.lost(f"edge node '{msg.edge}' is not born")
        elif node.resync:
            node.resync = False
        elif payload.HasField("seq"):
            expected = (node.seq + 1) % 256
            if payload.seq != expected:
                msg.out.lost(f"sequence gap: expected {expected}, got {payload.seq}")
        if payload.HasField("seq"):
            node.seq = payload.seq

    def _values(self, msg: _Message, kind: str, payload: SparkplugPayload) -> None:
        node, out = msg.node, msg.out
        birth = kind.endswith("BIRTH")
        if kind == "DBIRTH":
            node.devices[msg.device] = set()
        elif msg.device and node.born and msg.device not in node.devices:
            out.lost(f"device '{msg.device}' of edge node '{msg.edge}' is not born")
        born = node.devices.get(msg.device)
        for metric in payload.metrics:
            name = metric.name
            if birth:
                if metric.HasField("alias"):
                    node.aliases[metric.alias] = name
                if born is not None:
                    born.add(name)
            elif not name:
                if metric.alias not in node.aliases:
                    out.lost(f"alias {metric.alias} was never born", unusable=True)
                    continue
                name = node.aliases[metric.alias]
            measured = self._reading(msg, name, metric)
            if measured is not None:
                out.items.append(measured)

    def _reading(self, msg: _Message, name: str, metric: SparkplugMetric) -> ObservationIn | None:
        kind = msg.group.metrics.get(name)
        if kind is None:
            return None  # not a reading the hub was told to keep (bdSeq, Node Control/...)
        when = _moment(metric.timestamp) if metric.HasField("timestamp") else msg.sent
        site, device = msg.group.site, msg.hub_device()
        if metric.is_null:
            reason = "is_null: the edge node has no value"
            return Checked(
                site=site, device=device, kind=kind, time=when, quality="bad", quality_reason=reason
            )
        datatype = metric.datatype
        value = _number(metric, datatype)
        if value is None or (datatype and datatype not in _NUMERIC):
            msg.out.problems.append(f"metric '{name}' carries no number (datatype {datatype})")
            return None
        quality = _quality(metric)
        return ObservationIn(site=site, device=device, kind=kind, time=when, value=value, quality=quality)

    def _comm_loss(self, msg: _Message, device: str, names: set[str], why: str) -> None:
        kinds = msg.group.metrics
        hub_device = msg.hub_device(device)
        msg.out.items.extend(
            Checked(
                site=msg.group.site,
                device=hub_device,
                kind=kinds[name],
                time=msg.sent,
                quality="bad",
                quality_reason=f"comm_loss: {why}",
            )
            for name in sorted(names)
            if name in kinds
        )

    def _death(self, msg: _Message, payload: SparkplugPayload) -> None:
        node = msg.node
        bd_seq = next((int(m.long_value) for m in payload.metrics if m.name == "bdSeq"), None)
        if not node.born or (bd_seq is not None and node.bd_seq is not None and bd_seq != node.bd_seq):
            return  # a will message of an older session, or of a node never born here
        for device, names in sorted(node.devices.items()):
            self._comm_loss(msg, device, names, f"NDEATH of edge node '{msg.edge}'")
        node.born, node.devices, node.aliases = False, {}, {}

    def _ask_rebirth(self, msg: _Message, now: datetime, clock: float) -> None:
        node = msg.node
        interval = self._config.rebirth_interval_s
        if node.rebirth_asked is not None and clock - node.rebirth_asked < interval:
            return
        node.rebirth_asked = clock
        msg.out.rebirth = rebirth_command(msg.group.group, msg.edge, now)
