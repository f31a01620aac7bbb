"""OPC UA data changes as observations: status codes to quality, timestamps to time, ids that
dedup a value sent again, and comm loss for every node of a server that went away; and the
monitored items asked of the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua
from asyncua.ua import StatusCodes

from services.ingest.bridges.opcua import monitored_item
from services.ingest.bridges.opcua_config import Deadband, NodeMap, ServerConfig, SubscriptionConfig
from services.ingest.bridges.opcua_values import (
    NotANumber,
    Sample,
    comm_loss,
    observation,
    quality_of,
    status_name,
)
from services.ingest.domain.checks import Checked

NODE = NodeMap(node="ns=2;s=CDU1.GD101.H2S", device="gd-cdu1-101", kind="gas.h2s")
OTHER = NodeMap(node="ns=2;i=1042", device="gd-cdu1-102", kind="gas.lel", site="ulsan-refinery")
SERVER = ServerConfig(
    name="dcs-cdu",
    endpoint="opc.tcp://127.0.0.1:4840",
    site="ulsan-refinery",
    subscriptions=[SubscriptionConfig(nodes=[NODE, OTHER])],
)
SOURCE = datetime(2026, 11, 30, 8, 0, 0, 123456)  # naive, as asyncua gives them: UTC
SERVER_TIME = datetime(2026, 11, 30, 8, 0, 1)
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (StatusCodes.Good, "good"),
        (StatusCodes.GoodLocalOverride, "good"),
        (StatusCodes.UncertainLastUsableValue, "uncertain"),
        (StatusCodes.UncertainSensorNotAccurate, "uncertain"),
        (StatusCodes.BadSensorFailure, "bad"),
        (StatusCodes.BadCommunicationError, "bad"),
        (StatusCodes.BadNodeIdUnknown, "bad"),
        (0xC0000000, "bad"),  # the reserved severity: not a measurement either
        (StatusCodes.Good | 0x0400, "good"),  # info bits (overflow) do not change the severity
    ],
)
def test_the_status_code_severity_is_the_quality(code: int, quality: str) -> None:
    assert quality_of(code) == quality


def test_status_names_ignore_info_bits_and_show_unknown_codes_in_hex() -> None:
    assert status_name(StatusCodes.BadSensorFailure) == "BadSensorFailure"
    assert status_name(StatusCodes.UncertainLastUsableValue | 0x0400) == "UncertainLastUsableValue"
    assert status_name(0x80FF0000) == "0x80FF0000"


def test_a_good_value_keeps_its_source_timestamp() -> None:
    item = observation(SERVER, NODE, Sample(12.5, StatusCodes.Good, SOURCE, SERVER_TIME), NOW)

    assert (item.site, item.device, item.kind, item.value, item.quality) == (
        "ulsan-refinery",
        "gd-cdu1-101",
        "gas.h2s",
        12.5,
        "good",
    )
    assert item.time == SOURCE.replace(tzinfo=UTC)
    assert item.attributes == {}


def test_the_server_timestamp_stands_in_for_a_missing_source_timestamp_then_the_arrival() -> None:
    assert observation(SERVER, NODE, Sample(1, 0, None, SERVER_TIME), NOW).time == SERVER_TIME.replace(
        tzinfo=UTC
    )
    assert observation(SERVER, NODE, Sample(1, 0, None, None), NOW).time == NOW


def test_an_uncertain_value_is_kept_with_its_status() -> None:
    item = observation(SERVER, NODE, Sample(7, StatusCodes.UncertainSensorNotAccurate, SOURCE, None), NOW)

    assert (item.value, item.quality) == (7.0, "uncertain")
    assert item.attributes == {"opcua_status": "UncertainSensorNotAccurate"}


def test_a_bad_value_is_not_a_measurement_and_says_why() -> None:
    item = observation(SERVER, NODE, Sample(99.0, StatusCodes.BadSensorFailure, SOURCE, None), NOW)

    assert isinstance(item, Checked)
    assert (item.value, item.quality) == (None, "bad")
    assert item.quality_reason == "opcua: BadSensorFailure"


def test_booleans_are_numbers_and_text_is_not() -> None:
    assert observation(SERVER, NODE, Sample(True, 0, SOURCE, None), NOW).value == 1.0
    with pytest.raises(NotANumber, match="str"):
        observation(SERVER, NODE, Sample("high", 0, SOURCE, None), NOW)
    with pytest.raises(NotANumber, match="finite"):
        observation(SERVER, NODE, Sample(float("nan"), 0, SOURCE, None), NOW)


def test_ids_are_the_same_for_the_same_server_node_and_time_only() -> None:
    def ident(server: ServerConfig, node: NodeMap, value: float, at: datetime) -> str | None:
        return observation(server, node, Sample(value, 0, at, None), NOW).id

    first = ident(SERVER, NODE, 1.0, SOURCE)
    assert first == ident(SERVER, NODE, 1.0, SOURCE)  # sent again after a re-subscription
    assert first != ident(SERVER, NODE, 1.0, SOURCE + timedelta(microseconds=1))
    assert first != ident(SERVER, OTHER, 1.0, SOURCE)
    renamed = ServerConfig(
        name="dcs-fcc", endpoint=SERVER.endpoint, site=SERVER.site, subscriptions=SERVER.subscriptions
    )
    assert first != ident(renamed, NODE, 1.0, SOURCE)


def test_an_outage_is_comm_loss_for_every_node_of_the_server() -> None:
    items = comm_loss(SERVER, [NODE, OTHER], NOW, "connection lost")

    assert [(i.device, i.kind, i.quality, i.value, i.time) for i in items] == [
        ("gd-cdu1-101", "gas.h2s", "bad", None, NOW),
        ("gd-cdu1-102", "gas.lel", "bad", None, NOW),
    ]
    assert all(isinstance(i, Checked) and i.quality_reason == "comm_loss: connection lost" for i in items)
    assert len({i.id for i in items}) == 2
    assert items[0].id != observation(SERVER, NODE, Sample(1.0, 0, NOW, None), NOW).id


def test_a_monitored_item_asks_for_the_sampling_queue_and_deadband_configured() -> None:
    subscription = SubscriptionConfig(
        sampling_interval_ms=250, queue_size=7, deadband=Deadband(absolute=0.5), nodes=[NODE, OTHER]
    )
    own = NodeMap(
        node="ns=2;i=7",
        device="gd-cdu1-103",
        kind="gas.lel",
        sampling_interval_ms=0,
        deadband=Deadband(percent=2),
    )

    first = monitored_item(subscription, NODE, 1)
    second = monitored_item(subscription, own, 2)

    assert first.ItemToMonitor.NodeId == ua.NodeId("CDU1.GD101.H2S", 2)
    assert (first.RequestedParameters.ClientHandle, first.RequestedParameters.SamplingInterval) == (1, 250)
    assert first.RequestedParameters.QueueSize == 7
    assert first.RequestedParameters.Filter.DeadbandType == ua.DeadbandType.Absolute
    assert first.RequestedParameters.Filter.DeadbandValue == 0.5
    assert first.RequestedParameters.Filter.Trigger == ua.DataChangeTrigger.StatusValue
    assert second.ItemToMonitor.NodeId == ua.NodeId(7, 2)
    assert second.RequestedParameters.SamplingInterval == 0  # the node's own, over the subscription's
    assert second.RequestedParameters.Filter.DeadbandType == ua.DeadbandType.Percent
    assert second.RequestedParameters.Filter.DeadbandValue == 2
    plain = monitored_item(SubscriptionConfig(nodes=[NODE]), NODE, 3).RequestedParameters.Filter
    assert not isinstance(plain, ua.DataChangeFilter)  # no filter: every change is reported
