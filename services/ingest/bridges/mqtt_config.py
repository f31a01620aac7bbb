"""The `ingest.mqtt:` section: the broker to read from, and how its topics map to observations.

```yaml
ingest:
  mqtt:
    url: mqtts://broker.plant.example:8883
    client_id: safetyhub-ingest
    username: hub
    password_file: secrets/mqtt-password
    tls: {ca_file: ca.pem}
    topics:
      - pattern: "plant/{site}/{device}/{kind}"
        value: $.v
        time: $.ts
```

Everything is checked when the file is loaded, so a bad template stops start-up with the file,
line and key like any other config error.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from services.common.settings import PositiveFloat
from services.ingest.bridges.frigate_config import FrigateConfig
from services.ingest.bridges.sparkplug_config import SparkplugConfig

# The parts of an observation a topic segment (or a fixed value) may name.
TOPIC_FIELDS = ("tenant", "site", "device", "kind")
# The parts of an observation a JSON path of the payload may name.
PAYLOAD_FIELDS = ("value", "unit", "time", "quality", "id", "site", "device", "kind")
_SEGMENT = re.compile(r"^\{([a-z_]+)\}$")
# `$`, `$.a.b`, `$.a[0].b`: the subset of JSONPath a flat sensor payload needs.
_PATH = re.compile(r"^\$((\.[A-Za-z_][A-Za-z0-9_-]*)|(\[\d+\]))*$")


def _check_pattern(pattern: str) -> None:
    seen: set[str] = set()
    for segment in pattern.split("/"):
        if segment in ("", "+", "#") or "+" in segment or "#" in segment:
            if segment == "+":
                continue  # a level that is matched but not used
            raise ValueError(
                f"topic pattern {pattern!r}: a level is a literal word, '+' or one of"
                f" {{{'}, {'.join(TOPIC_FIELDS)}}} (no '#', no empty level)"
            )
        named = _SEGMENT.match(segment)
        if named is None:
            if "{" in segment or "}" in segment:
                raise ValueError(f"topic pattern {pattern!r}: '{segment}' must be a whole level")
            continue
        name = named.group(1)
        if name not in TOPIC_FIELDS:
            raise ValueError(f"topic pattern {pattern!r}: '{{{name}}}' is not one of {list(TOPIC_FIELDS)}")
        if name in seen:
            raise ValueError(f"topic pattern {pattern!r}: '{{{name}}}' appears twice")
        seen.add(name)


class TopicTemplate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One family of topics: which levels name tenant / site / device / kind, where the value is."""

    # Levels separated by '/': literal words, '+' (any, unused) and {tenant} {site} {device} {kind}.
    pattern: str
    # Fixed values for what the topic does not carry (a level or a payload path wins over these).
    tenant: str | None = None
    site: str | None = None
    device: str | None = None
    kind: str | None = None
    # JSON paths into the payload. A payload that is a bare number is the value itself ($).
    value: str | None = "$.value"
    unit: str | None = "$.unit"
    time: str | None = "$.time"
    quality: str | None = "$.quality"
    id: str | None = "$.id"
    # Paths for site / device / kind carried in the payload rather than the topic.
    site_path: str | None = None
    device_path: str | None = None
    kind_path: str | None = None

    def __post_init__(self) -> None:
        _check_pattern(self.pattern)
        named = set(re.findall(r"\{([a-z_]+)\}", self.pattern))
        for field in ("site", "device", "kind"):
            if (
                field not in named
                and getattr(self, field) is None
                and getattr(self, f"{field}_path") is None
            ):
                raise ValueError(
                    f"topic pattern {self.pattern!r} names no {{{field}}}: give '{field}' (a fixed"
                    f" value) or '{field}_path' (a JSON path into the payload)"
                )
        for name in ("value", "unit", "time", "quality", "id", "site_path", "device_path", "kind_path"):
            path = getattr(self, name)
            if path is not None and not _PATH.match(path):
                raise ValueError(
                    f"{name}: {path!r} is not a JSON path such as $.reading.value or $.values[0]"
                )

    @property
    def subscription(self) -> str:
        """The MQTT topic filter of the pattern: each named level becomes '+'."""
        return "/".join("+" if _SEGMENT.match(s) else s for s in self.pattern.split("/"))


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Paths relative to the config file. No ca_file: the system's trusted CAs.
    ca_file: str | None = None
    # A client certificate and its key, for brokers that authenticate clients by certificate.
    cert_file: str | None = None
    key_file: str | None = None


class ReconnectConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The wait after a lost connection doubles from `min_s` up to `max_s`.
    min_s: PositiveFloat = 0.5
    max_s: PositiveFloat = 30.0


class EmbeddedBrokerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Loopback only: the embedded broker is for a hub with no plant broker, never a shared one.
    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 1883


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The MQTT bridge; off unless `url` is set or `embedded` is true."""

    # mqtt://host[:1883] or mqtts://host[:8883]; None with `embedded: true` uses the embedded broker.
    url: str | None = None
    # Start a broker inside the hub, on loopback, and read from it (for `up` without a broker).
    embedded: bool = False
    broker: EmbeddedBrokerConfig = EmbeddedBrokerConfig()
    # The session's name at the broker: with clean_session off, the broker keeps what is published
    # for it while the hub is away. Two hubs must not share one.
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "safetyhub-ingest"
    username: str | None = None
    password: str | None = None
    # A file holding the password (relative to the config file), to keep it out of the config.
    password_file: str | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    reconnect: ReconnectConfig = ReconnectConfig()
    # Messages received and not yet acknowledged at once. With protocol 5 the bridge asks the
    # broker for this many (CONNECT's Receive Maximum); with 3.1.1 the broker's own limit
    # (Mosquitto: max_inflight_messages, 20 by default) usually binds first.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1000
    # The MQTT version spoken: "5" lets the bridge set its own in-flight window (above), where
    # 3.1.1 leaves it to the broker. The embedded broker speaks 3.1.1 only.
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    topics: list[TopicTemplate] = msgspec.field(default_factory=list)
    # Sparkplug B edge nodes (spBv1.0/...), read beside the JSON topics.
    sparkplug: SparkplugConfig | None = None
    # A Frigate NVR's events (<topic_prefix>/events), read beside the JSON topics.
    frigate: FrigateConfig | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
                raise ValueError(f"url: {self.url!r} is not mqtt://host[:port] or mqtts://host[:port]")
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError as err:
                raise ValueError(f"url: {self.url!r}: {err}") from err
        if self.url is not None and self.embedded:
            raise ValueError("give url (a broker to read from) or embedded: true, not both")
        if self.embedded and self.protocol == "5":
            raise ValueError('protocol: the embedded broker speaks MQTT 3.1.1 only; use "3.1.1"')
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.tls is not None and (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise ValueError("tls: a client certificate needs both cert_file and key_file")
        if self.enabled and not self.topics and self.sparkplug is None and self.frigate is None:
            raise ValueError(
                "topics: the bridge is on but maps no topic; add a template, a sparkplug or a"
                " frigate section"
            )

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.embedded
