"""A camera's detection, as the video service publishes it, raises the shipped alarm and makes
its incident: the demo's site files, alarm rules and fusion rules speak the `video.*` kinds.

The observations are built by the video service's own encoder (firing_observation, encode) and
published to OBSERVATIONS as its relay does; the alarm engine and fusion of a running hub with
the demo's files take it from there.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from services.common.bus.connection import connect_bus
from services.video.adapters.messages import encode, firing_observation
from services.video.domain.geometry import Box
from services.video.domain.rules import Firing, RuleKind
from tests.conftest import RunningHub, eventually

SITE = "ulsan-refinery"
TENANT = "ulsan-refining"
FRAME = (1280, 720)


async def publish_firing(nc: NATS, rule: RuleKind, *, device: str, zone: str, taken: datetime) -> None:
    firing = Firing(
        rule=rule,
        zone=zone,
        track_id=7,
        label={RuleKind.FIRE: "fire", RuleKind.SMOKE: "smoke"}.get(rule, "person"),
        box=Box(400.0, 200.0, 520.0, 460.0),
        confidence=0.83,
        time=0.0,
        dwell_s=4.0,
    )
    item = firing_observation(
        firing, site=SITE, device=device, taken=taken, frame=FRAME, snapshot=f"{device}-{uuid.uuid4().hex}"
    )
    _, message = encode(item, tenant=TENANT, received=datetime.now(UTC))
    ack = await nc.jetstream().publish(message.subject, message.payload, headers=message.headers)
    assert not ack.duplicate


def raised(pool: asyncpg.Pool, alarm_id: str) -> Any:
    async def probe() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT * FROM alarm_points WHERE tenant = $1 AND site = $2 AND alarm_id = $3 AND active",
            TENANT,
            SITE,
            alarm_id,
        )

    return probe


def incident_with(pool: asyncpg.Pool, alarm_id: str, *, certainty: str | None = None) -> Any:
    """The incident that has `alarm_id` among its members (and the certainty, if given)."""

    async def probe() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT id, type, body->>'certainty' AS certainty FROM incidents"
            " WHERE tenant = $1 AND site = $2 AND body->'members' @> jsonb_build_array("
            " jsonb_build_object('alarm_id', $3::text))"
            " AND ($4::text IS NULL OR body->>'certainty' = $4)",
            TENANT,
            SITE,
            alarm_id,
            certainty,
        )

    return probe


async def test_an_intrusion_seen_by_a_camera_raises_its_alarm_and_opens_an_intrusion(
    running_hub: RunningHub, nats_url: str
) -> None:
    pool = running_hub.hub.pool
    nc = await connect_bus(nats_url, name="video-kinds-test")
    try:
        taken = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        await publish_firing(nc, RuleKind.INTRUSION, device="cam-tf-501", zone="tank-farm", taken=taken)
        point = await eventually(
            raised(pool, "cam-tf-501--camera-intrusion"), what="the camera's intrusion alarm"
        )
        assert (point["priority"], point["alarm_class"], point["condition"]) == (
            "medium",
            "safety",
            "detection",
        )
        row = await eventually(
            incident_with(pool, "cam-tf-501--camera-intrusion"), what="an incident with the intrusion alarm"
        )
        assert row["type"] == "intrusion"
    finally:
        await nc.close()


async def test_a_camera_seeing_smoke_confirms_a_gas_release_and_its_fire_opens_a_fire(
    running_hub: RunningHub, nats_url: str
) -> None:
    pool = running_hub.hub.pool
    nc = await connect_bus(nats_url, name="video-kinds-test")
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        # CO in FCC 2 above its 35 ppm high (below the 70 ppm high-high), at a detector of no
        # voting group: a release that no second principle has confirmed yet.
        reading = {
            "site": SITE,
            "device": "gd-fcc2-202",
            "kind": "gas.co",
            "unit": "ppm",
            "value": 50.0,
            "time": (now - timedelta(seconds=20)).isoformat(),
        }
        async with running_hub.session.post(
            running_hub.url + "/v1/observations", json=[reading], headers=running_hub.auth("gateway")
        ) as response:
            assert response.status == 202, await response.text()
        release = await eventually(
            incident_with(pool, "gd-fcc2-202--co-high", certainty="Likely"), what="a likely gas release"
        )
        assert release["type"] == "gas_release"

        # The zone's camera sees the cloud: its smoke alarm joins the release and confirms it.
        await publish_firing(nc, RuleKind.SMOKE, device="cam-fcc2-201", zone="fcc-2", taken=now)
        await eventually(raised(pool, "cam-fcc2-201--camera-smoke"), what="the camera's smoke alarm")
        confirmed = await eventually(
            incident_with(pool, "cam-fcc2-201--camera-smoke", certainty="Observed"),
            what="the gas release confirmed by the camera's smoke",
        )
        assert confirmed["id"] == release["id"] and confirmed["type"] == "gas_release"
        releases = await pool.fetchval(
            "SELECT count(*) FROM incidents WHERE tenant = $1 AND site = $2 AND type = 'gas_release'",
            TENANT,
            SITE,
        )
        assert releases == 1

        # Fire at the tank farm's camera, whose flame and heat detectors read normal (so the
        # T-501 2oo3 group, which counts a silent member toward the trip, does not confirm it):
        # its high-priority alarm opens a fire, a possible one while no detector agrees.
        quiet = [
            {"site": SITE, "device": "fd-tf-501", "kind": "flame", "value": 0.0},
            {"site": SITE, "device": "hd-tf-501", "kind": "temperature", "value": 24.0},
        ]
        for item in quiet:
            item["time"] = now.isoformat()
        async with running_hub.session.post(
            running_hub.url + "/v1/observations", json=quiet, headers=running_hub.auth("gateway")
        ) as response:
            assert response.status == 202, await response.text()

        async def heard() -> bool:
            seen = await pool.fetchval(
                "SELECT count(DISTINCT device) FROM alarm_points WHERE tenant = $1 AND site = $2"
                " AND device IN ('fd-tf-501', 'hd-tf-501') AND engine_state IS NOT NULL",
                TENANT,
                SITE,
            )
            return bool(seen == 2)

        await eventually(heard, what="the tank's flame and heat detectors heard")
        await publish_firing(nc, RuleKind.FIRE, device="cam-tf-501", zone="tank-farm", taken=now)
        point = await eventually(raised(pool, "cam-tf-501--camera-fire"), what="the camera's fire alarm")
        assert (point["priority"], point["alarm_class"]) == ("high", "safety")
        fire = await eventually(
            incident_with(pool, "cam-tf-501--camera-fire", certainty="Possible"), what="a possible fire"
        )
        assert fire["type"] == "fire"
    finally:
        await nc.close()
