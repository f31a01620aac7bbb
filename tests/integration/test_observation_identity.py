"""What names an observation, and what the hub adds to it, from POST to GET on real NATS and PostgreSQL.

An observation is named by (tenant, id, time): the same client id in two tenants is two
observations, the same id at another time is another reading, and the same (tenant, id, time)
again is a retry whose first copy wins, however the copies travel.
"""

from __future__ import annotations

import io
import re
from typing import Any

import msgspec
import nats
import pytest

from tests.builders import RECENT, reading
from tests.conftest import RunningHub, eventually

pytestmark = pytest.mark.integration

SITE = "ulsan-refinery"
BASE = RECENT



async def post(hub: RunningHub, body: Any, *, key: str = "gateway") -> tuple[int, dict[str, Any]]:
    headers = {**hub.auth(key), "Content-Type": "application/json"}
    data = io.BytesIO(msgspec.json.encode(body))
    async with hub.session.post(hub.url + "/v1/observations", data=data, headers=headers) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def items(hub: RunningHub, key: str = "viewer", **params: str) -> list[dict[str, Any]]:
    async with hub.session.get(hub.url + "/v1/observations", params=params, headers=hub.auth(key)) as resp:
        assert resp.status == 200
        page: dict[str, Any] = msgspec.json.decode(await resp.read())
        return list(page["items"])


async def settled(hub: RunningHub, nats_url: str) -> None:
    """Wait until the store has committed everything the stream holds."""

    async def done() -> bool:
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().consumer_info("OBSERVATIONS", "store")
        finally:
            await nc.close()
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0

    await eventually(done, what="the store consumer has acked everything")


async def metric(hub: RunningHub, name: str, kind: str) -> float:
    async with hub.session.get(hub.url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(rf'^{name}\{{kind="{re.escape(kind)}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# ---------------------------------------------------------------- identity


async def test_the_same_id_in_two_tenants_is_two_observations_each_seen_by_its_tenant(
    running_hub: RunningHub, nats_url: str
) -> None:
    # Well within the stream's duplicate window, and at the same time, so neither the stream nor
    # the store may take one for a copy of the other.
    moment = BASE.isoformat()
    mipo = {
        "id": "shared-id-1",
        "site": "mipo-aromatics",
        "device": "gd-btx-101",
        "kind": "gas.lel",
        "value": 3.0,
        "time": moment,
    }
    smoke = {
        "id": "shared-id-1",
        "site": SITE,
        "device": "cam-tf-501",
        "kind": "video.smoke",
        "confidence": 0.91,
        "time": moment,
    }

    assert await post(running_hub, mipo, key="mipo_gateway") == (
        202,
        {"accepted": ["shared-id-1"], "rejected": []},
    )
    assert await post(running_hub, smoke) == (202, {"accepted": ["shared-id-1"], "rejected": []})

    await settled(running_hub, nats_url)
    ours = await items(running_hub)
    theirs = await items(running_hub, key="mipo_viewer")
    assert [(i["id"], i["tenant"], i["device"], i["kind"]) for i in ours] == [
        ("shared-id-1", "ulsan-refining", "cam-tf-501", "video.smoke")
    ]
    assert [(i["id"], i["tenant"], i["device"], i["value"]) for i in theirs] == [
        ("shared-id-1", "mipo-petrochem", "gd-btx-101", 3.0)
    ]


@pytest.mark.parametrize("how", ["one-post", "two-posts", "two-posts-in-other-company"])
async def test_a_reused_id_at_the_same_time_keeps_the_first_value(
    running_hub: RunningHub, nats_url: str, how: str
) -> None:
    first, again = reading(0, id="r-1", value=12.5), reading(0, id="r-1", value=99.0)
    if how == "one-post":
        status, body = await post(running_hub, [first, again])
        assert (status, body["accepted"]) == (202, ["r-1", "r-1"])
    else:
        assert (await post(running_hub, [first]))[0] == 202
        # Alone, the second copy is the same bus message to JetStream; with another reading of
        # the device it travels in a message of its own, and the store must drop it.
        second = [again] if how == "two-posts" else [again, reading(5, id="r-5")]
        status, body = await post(running_hub, second)
        assert status == 202 and body["accepted"][0] == "r-1"

    await settled(running_hub, nats_url)
    got = [(i["id"], i["value"]) for i in await items(running_hub, site=SITE) if i["id"] == "r-1"]
    assert got == [("r-1", 12.5)]


@pytest.mark.parametrize("how", ["one-post", "two-posts"])
async def test_a_reused_id_at_another_time_is_another_observation(
    running_hub: RunningHub, nats_url: str, how: str
) -> None:
    earlier, later = reading(0, id="r-2", value=1.0), reading(60, id="r-2", value=2.0)
    if how == "one-post":
        assert (await post(running_hub, [earlier, later]))[0] == 202
    else:
        assert (await post(running_hub, [earlier]))[0] == 202
        assert (await post(running_hub, [later]))[0] == 202

    await settled(running_hub, nats_url)
    got = [(i["id"], i["value"]) for i in await items(running_hub, site=SITE)]
    assert got == [("r-2", 2.0), ("r-2", 1.0)]  # newest first


# ---------------------------------------------------------------- sites a key may not post for


async def test_an_unknown_site_and_another_tenants_site_are_refused_alike(running_hub: RunningHub) -> None:
    async def refusal(site: str, key: str = "gateway") -> dict[str, Any]:
        status, body = await post(running_hub, [reading(0), reading(1, site=site)], key=key)
        assert status == 403
        return msgspec.json.decode(msgspec.json.encode(body).replace(site.encode(), b"<site>"))

    theirs, unknown = await refusal("mipo-aromatics"), await refusal("nope")
    assert theirs == unknown
    assert theirs["detail"] == "this key may not post for site '<site>'"
    assert theirs["errors"] == [{"index": 1, "field": "site", "detail": theirs["detail"]}]
    # A key limited to some of its tenant's sites: the same answer for its own tenant's other site.
    limited = [
        await refusal(s, key="gateway_cdu_only") for s in ("mipo-aromatics", "nope", "ulsan-refinery-east")
    ]
    assert limited[0] == limited[1] == limited[2]


# ---------------------------------------------------------------- what the registry adds


async def test_a_reading_outside_its_range_is_stored_as_bad_with_the_reason_and_counted(
    running_hub: RunningHub, nats_url: str
) -> None:
    before = await metric(running_hub, "safetyhub_ingest_out_of_range_total", "gas.h2s")
    batch = [
        reading(0, id="high", value=5000.0),
        reading(1, id="low", value=-40.0),
        reading(2, id="edge", value=100.0),  # the registered range, 0..100 ppm, is inclusive
        reading(3, id="told", value=5000.0, quality="uncertain"),
    ]

    status, body = await post(running_hub, batch)

    assert (status, body["accepted"]) == (202, ["high", "low", "edge", "told"])
    await settled(running_hub, nats_url)
    stored = {i["id"]: i for i in await items(running_hub, site=SITE)}
    assert {k: (v["value"], v["quality"], v.get("qualityReason")) for k, v in stored.items()} == {
        "high": (5000.0, "bad", "out_of_range: 5000 outside 0..100 ppm"),
        "low": (-40.0, "bad", "out_of_range: -40 outside 0..100 ppm"),
        "edge": (100.0, "good", None),
        "told": (5000.0, "uncertain", "out_of_range: 5000 outside 0..100 ppm"),
    }
    assert await metric(running_hub, "safetyhub_ingest_out_of_range_total", "gas.h2s") == before + 3


async def test_a_unit_left_out_is_filled_from_the_registry(running_hub: RunningHub, nats_url: str) -> None:
    item = reading(0, id="no-unit", kind="gas.lel", value=4.0)
    del item["unit"]

    assert (await post(running_hub, [item]))[0] == 202

    await settled(running_hub, nats_url)
    (stored,) = await items(running_hub, site=SITE)
    assert (stored["id"], stored["unit"]) == ("no-unit", "%LEL")
