"""Sparkplug B to observations (pure): births, data by alias, deaths, sequence gaps and rebirth.
Payloads are encoded with the protobuf classes generated from the .proto, or read from bytes the
reference (eclipse/tahu) classes encoded; never by the reader under test."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.contracts.sparkplug import SparkplugPayload
from services.ingest.bridges.mqtt_mapping import Unmapped
from services.ingest.bridges.sparkplug import NodeId, SparkplugReader
from services.ingest.bridges.sparkplug_config import SparkplugConfig, SparkplugGroup
from services.ingest.domain.checks import Checked

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sparkplug"
NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000) - 60_000
GROUP = SparkplugGroup(
    group="cdu",
    site="ulsan-refinery",
    devices={"edge-1/det-101": "gd-cdu1-101", "edge-1": "gw-cdu1"},
    metrics={"Gas/H2S": "gas.h2s", "Gas/LEL": "gas.lel", "Temp": "temperature", "Flame": "flame",
             "Broken": "gas.co", "Stale": "pressure", "Table": "table"},
)  # fmt: skip
DOUBLE, FLOAT, INT8, BOOLEAN, STRING = 10, 9, 1, 11, 12


def reader() -> SparkplugReader:
    return SparkplugReader(SparkplugConfig(groups=[GROUP], rebirth_interval_s=5.0))


def payload(seq: int | None, *metrics: dict[str, object], timestamp: int = T0) -> bytes:
    message = SparkplugPayload(timestamp=timestamp)
    if seq is not None:
        message.seq = seq
    for fields in metrics:
        message.metrics.add(**fields)  # type: ignore[arg-type]
    return message.SerializeToString()


def h2s(value: float, **more: object) -> dict[str, object]:
    return {"name": "Gas/H2S", "alias": 1, "datatype": DOUBLE, "double_value": value, "timestamp": T0, **more}


BD_SEQ = {"name": "bdSeq", "datatype": 8, "long_value": 1}


def born(spb: SparkplugReader) -> None:
    spb.read("spBv1.0/cdu/NBIRTH/edge-1", payload(0, BD_SEQ), NOW, 0)
    spb.read(
        "spBv1.0/cdu/DBIRTH/edge-1/det-101",
        payload(1, h2s(1.0), {"name": "Gas/LEL", "alias": 2, "datatype": FLOAT, "float_value": 3.0}),
        NOW,
        0,
    )


def test_a_birth_declares_aliases_and_its_values_are_readings() -> None:
    spb = reader()
    out = spb.read("spBv1.0/cdu/NBIRTH/edge-1", payload(0, BD_SEQ), NOW, 0)
    assert out.items == [] and not out.problems and out.rebirth is None

    out = spb.read("spBv1.0/cdu/DBIRTH/edge-1/det-101", payload(1, h2s(4.5)), NOW, 0)

    [item] = out.items
    assert (item.site, item.device, item.kind, item.value, item.quality) == (
        "ulsan-refinery", "gd-cdu1-101", "gas.h2s", 4.5, "good"
    )  # fmt: skip
    assert item.time == datetime.fromtimestamp(T0 / 1000, UTC)


def test_data_by_alias_maps_to_the_born_metric() -> None:
    spb = reader()
    born(spb)

    out = spb.read(
        "spBv1.0/cdu/DDATA/edge-1/det-101",
        payload(
            2, {"alias": 2, "float_value": 7.25, "timestamp": T0 + 1000}, {"alias": 1, "double_value": 2.0}
        ),
        NOW,
        1,
    )

    assert [(i.kind, i.value) for i in out.items] == [("gas.lel", 7.25), ("gas.h2s", 2.0)]
    assert not out.problems and not out.out_of_step and out.rebirth is None


def test_a_sequence_gap_asks_the_node_for_a_rebirth_and_keeps_the_values() -> None:
    spb = reader()
    born(spb)

    out = spb.read("spBv1.0/cdu/DDATA/edge-1/det-101", payload(5, {"alias": 1, "double_value": 2.0}), NOW, 1)

    assert [i.value for i in out.items] == [2.0]
    assert out.out_of_step == ["sequence gap: expected 2, got 5"]
    assert out.problems == []
    assert out.rebirth is not None
    assert out.rebirth.topic == "spBv1.0/cdu/NCMD/edge-1"
    [metric] = SparkplugPayload.FromString(out.rebirth.payload).metrics
    assert (metric.name, metric.datatype, metric.boolean_value) == ("Node Control/Rebirth", BOOLEAN, True)


def test_the_sequence_wraps_after_255() -> None:
    spb = reader()
    spb.read("spBv1.0/cdu/NBIRTH/edge-1", payload(0), NOW, 0)
    for seq in [*range(1, 256), 0, 1]:
        out = spb.read("spBv1.0/cdu/NDATA/edge-1", payload(seq), NOW, 0)
        assert not out.out_of_step, seq


def test_rebirth_requests_are_limited_per_node() -> None:
    spb = reader()
    born(spb)

    first = spb.read("spBv1.0/cdu/NDATA/edge-1", payload(9), NOW, 10.0)
    again = spb.read("spBv1.0/cdu/NDATA/edge-1", payload(20), NOW, 11.0)
    later = spb.read("spBv1.0/cdu/NDATA/edge-1", payload(40), NOW, 16.0)

    assert first.rebirth is not None and again.rebirth is None and later.rebirth is not None


def test_an_alias_never_born_is_a_problem_and_asks_for_a_rebirth() -> None:
    spb = reader()
    born(spb)

    out = spb.read("spBv1.0/cdu/DDATA/edge-1/det-101", payload(2, {"alias": 99, "double_value": 1.0}), NOW, 0)

    assert out.items == []
    assert out.problems == ["alias 99 was never born"]
    assert out.rebirth is not None


def test_data_from_a_node_never_born_asks_for_a_rebirth() -> None:
    out = reader().read("spBv1.0/cdu/NDATA/edge-1", payload(7, {"alias": 1, "double_value": 1.0}), NOW, 0)

    assert "edge node 'edge-1' is not born" in out.out_of_step
    assert out.problems == ["alias 1 was never born"]
    assert out.rebirth is not None


def test_ndeath_is_comm_loss_for_every_mapped_metric_of_every_device_of_the_node() -> None:
    spb = reader()
    born(spb)

    out = spb.read("spBv1.0/cdu/NDEATH/edge-1", payload(None, {"name": "bdSeq", "long_value": 1}), NOW, 0)

    assert sorted((i.device, i.kind, i.value, i.quality) for i in out.items) == [
        ("gd-cdu1-101", "gas.h2s", None, "bad"),
        ("gd-cdu1-101", "gas.lel", None, "bad"),
    ]
    assert all(isinstance(i, Checked) and (i.quality_reason or "").startswith("comm_loss") for i in out.items)
    # Dead: data before the next birth is out of step.
    assert spb.read("spBv1.0/cdu/NDATA/edge-1", payload(3), NOW, 0).rebirth is not None


def test_an_ndeath_of_an_older_session_changes_nothing() -> None:
    spb = reader()
    born(spb)

    stale = spb.read("spBv1.0/cdu/NDEATH/edge-1", payload(None, {"name": "bdSeq", "long_value": 0}), NOW, 0)

    assert stale.items == []
    data = payload(2, {"alias": 1, "double_value": 1})
    assert not spb.read("spBv1.0/cdu/DDATA/edge-1/det-101", data, NOW, 0).out_of_step


def test_ddeath_is_comm_loss_for_that_device_only() -> None:
    spb = reader()
    born(spb)

    out = spb.read("spBv1.0/cdu/DDEATH/edge-1/det-101", payload(2), NOW, 0)

    assert {(i.device, i.kind, i.quality) for i in out.items} == {
        ("gd-cdu1-101", "gas.h2s", "bad"), ("gd-cdu1-101", "gas.lel", "bad")
    }  # fmt: skip
    assert not out.problems


def test_reference_encoded_birth_values_nulls_and_quality() -> None:
    """Bytes encoded by eclipse/tahu's sparkplug_b.proto classes (tests/fixtures/sparkplug):
    double, float, Int8 -5 in two's complement, boolean, is_null, an OPC quality property of 0
    and a data set the hub does not read."""
    spb = reader()
    data = (FIXTURES / "birth-by-tahu.bin").read_bytes()

    out = spb.read("spBv1.0/cdu/NBIRTH/edge-1", data, NOW, 0)

    got = {i.kind: (i.value, i.quality) for i in out.items}
    assert got == {
        "gas.h2s": (4.25, "good"),
        "gas.lel": (12.5, "good"),
        "temperature": (-5.0, "good"),
        "flame": (1.0, "good"),
        "gas.co": (None, "bad"),
        "pressure": (7.0, "bad"),
    }
    assert out.problems == ["metric 'Table' carries no number (datatype 16)"]
    assert {i.device for i in out.items} == {"gw-cdu1"}  # the node's own metrics: its device entry


@pytest.mark.parametrize(
    ("topic", "data", "category"),
    [
        ("spBv1.0/other/NDATA/edge-1", b"", "unmatched_topic"),
        ("spBv1.0/cdu/NOPE/edge-1", b"", "unmatched_topic"),
        ("spBv1.0/cdu/NDATA/edge-1", b"\xff\xff\xff", "malformed"),
    ],
)
def test_what_cannot_be_read_says_why(topic: str, data: bytes, category: str) -> None:
    with pytest.raises(Unmapped) as info:
        reader().read(topic, data, NOW, 0)

    assert info.value.category == category


def test_commands_and_host_state_are_not_readings() -> None:
    spb = reader()
    assert spb.read("spBv1.0/cdu/NCMD/edge-1", payload(None), NOW, 0).items == []
    assert spb.read("spBv1.0/STATE/host-1", b"{}", NOW, 0).items == []


def test_births_restored_in_another_reader_map_aliases_and_take_the_next_sequence_as_it_comes() -> None:
    first = reader()
    born(first)
    out = first.read("spBv1.0/cdu/DDEATH/edge-1/det-101", payload(2), NOW, 0)
    assert out.changed == NodeId("cdu", "edge-1")
    first.read("spBv1.0/cdu/DBIRTH/edge-1/det-101", payload(3, h2s(1.0)), NOW, 0)

    second = reader()
    second.restore(first.export(NodeId("cdu", "edge-1")))
    device = "spBv1.0/cdu/DDATA/edge-1/det-101"
    out = second.read(device, payload(9, {"alias": 1, "double_value": 8.0}), NOW, 0)

    assert [(i.kind, i.value) for i in out.items] == [("gas.h2s", 8.0)]
    assert not out.out_of_step and out.changed is None
    gap = second.read(device, payload(12, {"alias": 1, "double_value": 1}), NOW, 0)
    assert gap.out_of_step == ["sequence gap: expected 10, got 12"]
