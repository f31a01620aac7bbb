"""The `ingest.mqtt:` section: a bad bridge config stops start-up naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiomqtt import ProtocolVersion

from services.common.errors import ConfigError
from services.hub.registry import REGISTRY
from services.ingest.bridges.mqtt import _session_options

GOOD = """\
ingest:
  mqtt:
    url: mqtt://127.0.0.1:1883
    topics:
      - pattern: "plant/{site}/{device}/{kind}"
"""


SPARKPLUG = """\
ingest:
  mqtt:
    url: mqtt://127.0.0.1:1883
    sparkplug:
      groups:
        - group: cdu
          site: ulsan-refinery
          metrics: {H2S: gas.h2s}
"""

FRIGATE = """\
ingest:
  mqtt:
    url: mqtt://127.0.0.1:1883
    frigate:
      cameras:
        - name: tank_farm_sw
          site: ulsan-refinery
          device: cam-tf-501
          detect: {width: 1280, height: 720}
          zones: {bund_t501: tank-farm}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "hub.yaml"
    path.write_text(text, encoding="utf-8")
    return REGISTRY.load_config(path, env={})[0]


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_a_good_section_loads_with_qos1_persistent_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)

    mqtt = config.ingest.mqtt  # type: ignore[attr-defined]
    assert mqtt.enabled
    assert mqtt.client_id == "safetyhub-ingest"
    assert mqtt.topics[0].subscription == "plant/+/+/+"


def test_a_sparkplug_section_alone_turns_the_bridge_on(tmp_path: Path) -> None:
    mqtt = load(tmp_path, SPARKPLUG).ingest.mqtt  # type: ignore[attr-defined]

    assert mqtt.enabled
    assert mqtt.sparkplug.groups[0].metrics == {"H2S": "gas.h2s"}


def test_a_frigate_section_alone_turns_the_bridge_on_reading_frigate_events(tmp_path: Path) -> None:
    mqtt = load(tmp_path, FRIGATE).ingest.mqtt  # type: ignore[attr-defined]

    assert mqtt.enabled
    assert mqtt.frigate.topic == "frigate/events"
    assert mqtt.frigate.cameras[0].labels == {"person": "video.intrusion"}


def test_mqtt_5_asks_the_broker_for_the_bridge_s_own_window_in_a_session_that_never_expires(
    tmp_path: Path,
) -> None:
    default = load(tmp_path, GOOD).ingest.mqtt  # type: ignore[attr-defined]
    v5 = load(tmp_path, GOOD + "    protocol: '5'\n    max_in_flight: 4000\n").ingest.mqtt  # type: ignore[attr-defined]

    assert default.protocol == "3.1.1"
    assert _session_options(default) == {"clean_session": False}
    options = _session_options(v5)
    assert options["protocol"] == ProtocolVersion.V5
    assert options["clean_start"] is False
    assert options["properties"].ReceiveMaximum == 4000
    assert options["properties"].SessionExpiryInterval == 0xFFFFFFFF


def test_the_bridge_is_off_by_default(tmp_path: Path) -> None:
    assert not load(tmp_path, "log_level: info\n").ingest.mqtt.enabled  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (GOOD + "    qos: 2\n", 6, "ingest.mqtt", "unknown field `qos`"),
        (GOOD + "        valeu: $.v\n", 6, "ingest.mqtt.topics[0]", "unknown field `valeu`"),
        (GOOD.replace("mqtt://", "http://"), 2, "ingest.mqtt", "not mqtt://host"),
        (GOOD + "    embedded: true\n", 2, "ingest.mqtt", "not both"),
        (GOOD.replace("{kind}", "{knd}"), 5, "ingest.mqtt.topics[0]", "'{knd}' is not one of"),
        (GOOD.replace("/{kind}", "/#"), 5, "ingest.mqtt.topics[0]", "no '#'"),
        (GOOD.replace("/{kind}", ""), 5, "ingest.mqtt.topics[0]", "names no {kind}"),
        (GOOD + "        value: value\n", 5, "ingest.mqtt.topics[0]", "not a JSON path"),
        (
            "ingest:\n  mqtt:\n    embedded: true\n",
            2,
            "ingest.mqtt",
            "maps no topic",
        ),
        (GOOD + "    tls: {cert_file: c.pem}\n", 2, "ingest.mqtt", "needs both cert_file and key_file"),
        (GOOD + "    protocol: '3.1'\n", 6, "ingest.mqtt.protocol", "Invalid enum value '3.1'"),
        (GOOD + "    max_in_flight: 70000\n", 6, "ingest.mqtt.max_in_flight", "<= 65535"),
        (
            "ingest:\n  mqtt:\n    embedded: true\n    protocol: '5'\n"
            "    topics: [{pattern: 'a/{site}/{device}/{kind}'}]\n",
            2,
            "ingest.mqtt",
            "speaks MQTT 3.1.1 only",
        ),
        (SPARKPLUG + "          devics: {}\n", 9, "sparkplug.groups[0].devics", "unknown field `devics`"),
        (SPARKPLUG.replace("cdu", "cd/u"), 6, "ingest.mqtt.sparkplug.groups[0].group", "matching regex"),
        (SPARKPLUG.replace("          metrics: {H2S: gas.h2s}\n", ""), 6, "groups[0]", "maps no metric"),
        (SPARKPLUG + "        - {group: cdu, site: s, metrics: {a: b}}\n", 4, "sparkplug", "listed twice"),
        (FRIGATE + "          zone: x\n", 11, "frigate.cameras[0]", "unknown field `zone`"),
        (FRIGATE.replace("width: 1280", "width: 0"), 9, "frigate.cameras[0].detect.width", ">= 1"),
        (FRIGATE.replace("frigate:\n", "frigate:\n      topic_prefix: a/b\n"), 5, "topic_prefix", "regex"),
        (FRIGATE.replace("frigate:\n", "frigate:\n      url: ftp://x\n"), 4, "mqtt.frigate", "http(s)"),
        (FRIGATE.replace("{bund_t501: tank-farm}", "{}"), 10, "cameras[0].zones", "length >= 1"),
        (FRIGATE + "        - {name: tank_farm_sw, site: s, device: d, detect: {width: 1, height: 1},"
         " zones: {a: b}}\n", 4, "ingest.mqtt.frigate", "listed twice"),
    ],
)
def test_a_bad_bridge_config_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    message = error(tmp_path, text)

    assert f"hub.yaml:{line}" in message, message
    assert key in message, message
    assert words in message, message
