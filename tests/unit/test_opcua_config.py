"""The OPC UA bridge's file: a bad one stops start-up naming file, line and key, whether the
mistake is in its shape (unknown key, node id syntax) or against the site registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.common.sites.registry import SiteRegistry
from services.hub.registry import REGISTRY
from services.ingest.bridges.opcua_config import LoadedOpcua, check_node_id, load_opcua_file
from tests.conftest import DEMO_SITES

GOOD = """\
servers:
  - name: dcs-cdu
    endpoint: opc.tcp://127.0.0.1:4840/dcs
    site: ulsan-refinery
    subscriptions:
      - publishing_interval_ms: 200
        sampling_interval_ms: 100
        deadband: {absolute: 0.5}
        nodes:
          - {node: "ns=2;s=CDU1.GD101.H2S", device: gd-cdu1-101, kind: gas.h2s, unit: ppm}
          - {node: "ns=2;i=1042", device: gd-cdu1-102, kind: gas.lel, deadband: {percent: 2}}
"""


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return SiteRegistry.load([DEMO_SITES])


@pytest.fixture
def loader(tmp_path: Path, registry: SiteRegistry) -> Callable[[str], LoadedOpcua]:
    return lambda text: load(tmp_path, text, registry)


def load(tmp_path: Path, text: str, registry: SiteRegistry) -> LoadedOpcua:
    path = tmp_path / "opcua.yaml"
    path.write_text(text, encoding="utf-8")
    return load_opcua_file(path, registry)


def test_a_good_file_loads_with_its_subscriptions_and_deadbands(
    tmp_path: Path, registry: SiteRegistry
) -> None:
    loaded = load(tmp_path, GOOD, registry)

    server = loaded.config.servers[0]
    assert server.security.policy == "None"
    subscription = server.subscriptions[0]
    assert subscription.deadband is not None
    assert subscription.deadband.absolute == 0.5
    assert [n.node for n in subscription.nodes] == ["ns=2;s=CDU1.GD101.H2S", "ns=2;i=1042"]
    assert subscription.nodes[1].deadband is not None
    assert subscription.nodes[1].deadband.percent == 2
    assert loaded.credentials["dcs-cdu"].password is None


def test_a_password_file_and_certificates_are_read_relative_to_the_file(
    tmp_path: Path, registry: SiteRegistry
) -> None:
    (tmp_path / "secret").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "hub.der").write_bytes(b"cert")
    (tmp_path / "hub.pem").write_bytes(b"key")
    text = GOOD.replace(
        "    site: ulsan-refinery\n",
        "    site: ulsan-refinery\n    username: hub\n    password_file: secret\n"
        "    security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate: hub.der,"
        " private_key: hub.pem}\n",
    )

    loaded = load(tmp_path, text, registry)

    credentials = loaded.credentials["dcs-cdu"]
    assert credentials.password == "s3cret"
    assert credentials.certificate == tmp_path / "hub.der"


def test_the_hub_config_names_the_file_and_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("ingest:\n  opcua:\n    file: opcua.yaml\n", encoding="utf-8")
    config = REGISTRY.load_config(path, env={})[0]
    assert config.ingest.opcua.file == "opcua.yaml"  # type: ignore[attr-defined]
    assert not REGISTRY.load_config(None, env={})[0].ingest.opcua.enabled  # type: ignore[attr-defined]

    path.write_text("ingest:\n  opcua:\n    files: opcua.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        REGISTRY.load_config(path, env={})
    assert "hub.yaml:3" in str(info.value)
    assert "unknown field `files`" in str(info.value)


@pytest.mark.parametrize(
    ("change", "line", "key", "words"),
    [
        (("    site:", "    sitte:"), 4, "servers[0]", "unknown field `sitte`"),
        (
            ("deadband: {absolute: 0.5}", "deadband: {absolute: 0.5, percent: 1}"),
            8,
            "deadband",
            "one of the two",
        ),
        (("ns=2;s=CDU1", "ns=2;x=CDU1"), 10, "servers[0].subscriptions[0].nodes[0]", "is not a node id"),
        (("ns=2;i=1042", "ns=2;i=abc"), 11, "nodes[1]", "is not a node id"),
        (("ns=2;i=1042", "ns=70000;i=1"), 11, "nodes[1]", "namespace index"),
        (("opc.tcp://127", "http://127"), 2, "servers[0]", "is not opc.tcp://"),
        (("ns=2;i=1042", "ns=2;s=CDU1.GD101.H2S"), 2, "servers[0]", "listed twice"),
        (("site: ulsan-refinery", "site: atlantis"), 4, "servers[0].site", "unknown site 'atlantis'"),
        (("device: gd-cdu1-101", "device: gd-nope"), 10, "nodes[0].device", "'gd-nope' is not registered"),
        (("kind: gas.h2s", "kind: gas.co"), 10, "nodes[0].kind", "does not measure 'gas.co'"),
        (("unit: ppm", "unit: ppb"), 10, "nodes[0].unit", "is in 'ppm', not 'ppb'"),
        (
            ("    site: ulsan-refinery\n", "    site: ulsan-refinery\n    tenant: mipo-petrochem\n"),
            4,
            "site",
            "tenant",
        ),
        (("    site: ulsan-refinery\n", ""), 2, "servers[0]", "no site"),
        (
            ("    site: ulsan-refinery\n", "    site: ulsan-refinery\n    password: x\n"),
            2,
            "servers[0]",
            "needs a username",
        ),
        (
            (
                "    site: ulsan-refinery\n",
                "    site: ulsan-refinery\n    security: {policy: Basic256Sha256, mode: Sign}\n",
            ),
            5,
            "servers[0].security",
            "needs certificate and private_key",
        ),
        (
            (
                "    site: ulsan-refinery\n",
                "    site: ulsan-refinery\n    username: u\n    password_file: nowhere\n",
            ),
            6,
            "servers[0].password_file",
            "cannot read",
        ),
        (
            (
                "        sampling_interval_ms: 100\n",
                "        sampling_interval_ms: 100\n        queue_size: 0\n",
            ),
            8,
            "subscriptions[0].queue_size",
            ">= 1",
        ),
    ],
)
def test_a_bad_file_names_file_line_and_key(
    loader: Callable[[str], LoadedOpcua], change: tuple[str, str], line: int, key: str, words: str
) -> None:
    old, new = change
    assert old in GOOD
    text = GOOD.replace(old, new, 1)

    with pytest.raises(ConfigError) as info:
        loader(text)

    message = str(info.value)
    assert f"opcua.yaml:{line}" in message, message
    assert key in message, message
    assert words in message, message


@pytest.mark.parametrize(
    "text",
    [
        "ns=2;s=CDU1.GD101.H2S",
        "ns=2;i=1042",
        "i=2258",
        "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
        "ns=1;b=M/RbKBsRVkePCePcx24oRA==",
    ],
)
def test_node_ids_in_their_string_forms_are_accepted(text: str) -> None:
    check_node_id(text)
