"""Frigate's `frigate/events` through a real broker, NATS and PostgreSQL: new / update / end
messages of Frigate's documented shape become `video.intrusion` observations in the store, once
each however often Frigate repeats itself or the broker redelivers, and messages that are not
Frigate events, or name a device that is not a camera, reach DEADLETTER with the reason."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import msgspec
import pytest

from services.common.bus.deadletter import REASON_HEADER, SUBJECT_HEADER
from services.ingest.bridges.frigate_config import DetectSize, FrigateCameraConfig, FrigateConfig
from tests.conftest import REPO, eventually
from tests.integration.test_mqtt_bridge import (
    bridge_connected,
    bridged_hub,
    dead_letters,
    forget_session,
    mqtt_config,
    sensor,
)

pytestmark = pytest.mark.integration

# Frigate's documented `frigate/events` message (source in the fixture folder's README).
DOCUMENTED: dict[str, Any] = json.loads((REPO / "tests/fixtures/frigate/events-update.json").read_text())
SITE, CAMERA = "ulsan-refinery", "cam-tf-501"


def frigate_config(prefix: str) -> FrigateConfig:
    return FrigateConfig(
        topic_prefix=prefix,
        url="http://frigate.plant.example:5000",
        cameras=[
            # Frigate's boxes in the documented message reach y = 854: a 1080p detect stream.
            FrigateCameraConfig(
                name="front_door",
                site=SITE,
                device=CAMERA,
                detect=DetectSize(width=1920, height=1080),
                zones={"yard": "tank-farm"},  # driveway is not watched
            ),
            FrigateCameraConfig(
                name="gate",
                site=SITE,
                device="gd-cdu1-101",  # a gas detector: no camera
                detect=DetectSize(width=1280, height=720),
                zones={"yard": "cdu-1"},
            ),
        ],
    )


class Events:
    """Messages of the documented object, its times moved to a minute ago, as Frigate sends
    them: `new` when `before` was a false positive, `end` with `end_time` set."""

    def __init__(self) -> None:
        self._shift = time.time() - 60 - DOCUMENTED["before"]["start_time"]

    def state(self, which: str, object_id: str | None = None, **changes: Any) -> dict[str, Any]:
        state = dict(DOCUMENTED[which])
        for key in ("frame_time", "snapshot_time", "start_time"):
            state[key] += self._shift
        if object_id is not None:
            state["id"] = f"{state['start_time']:.6f}-{object_id}"
        state.update(changes)
        return state

    def message(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> bytes:
        return msgspec.json.encode({"type": kind, "before": before, "after": after})


async def test_frigate_events_through_the_broker_reach_the_store_once(
    nats_url: str, database_url: str, mqtt_url: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    prefix, client_id = f"frigate{tag}", f"safetyhub-test-{tag}"
    topic = f"{prefix}/events"
    ev = Events()
    # The documented object, first a false positive, then reported: it had entered the yard.
    unseen = ev.state("before", current_zones=[], entered_zones=["yard"], false_positive=True)
    new = ev.message("new", unseen, ev.state("before"))
    update = ev.message("update", ev.state("before"), ev.state("after"))  # exactly as documented
    # A second object walks into the yard on an update, with a snapshot.
    outside = ev.state("before", "walker", current_zones=[], entered_zones=[])
    walks_in = ev.state("after", "walker", has_snapshot=True)
    # A third is only reported as it ends, already in the yard.
    runner = ev.state("before", "runner", current_zones=[], entered_zones=[])
    ended = ev.message(
        "end", runner, ev.state("after", "runner", frame_time=time.time() - 40, end_time=time.time() - 30)
    )
    # Frigate's own verdict: a false positive is no one.
    ghost = ev.message("update", outside, ev.state("after", "ghost", false_positive=True))
    bad = [
        (b"{not json", "not JSON"),
        (ev.message("update", outside, ev.state("after", "gate", camera="gate")), "not a camera"),
    ]
    config = mqtt_config(mqtt_url, "unused" + tag, client_id, topics=[], frigate=frigate_config(prefix))
    try:
        async with bridged_hub(nats_url, database_url, config) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as client:
                for payload in (
                    new,
                    update,
                    new,  # sent again, as a broker redelivers it
                    update,
                    ev.message("update", outside, walks_in),
                    ev.message("update", walks_in, walks_in),  # a better snapshot: no new entry
                    ended,
                    ghost,
                    *(payload for payload, _ in bad),
                ):
                    await client.publish(topic, payload, qos=1)

            async def intrusions() -> list[Any] | None:
                rows = await hub.pool.fetch(
                    "SELECT id, tenant, site, device, kind, confidence, snapshot, detail"
                    " FROM observations ORDER BY time, id"
                )
                return rows if len(rows) >= 3 else None

            rows = await eventually(intrusions, what="three intrusions stored")
            letters = await dead_letters(nats_url, len(bad))
            await asyncio.sleep(1.0)  # a copy would have been stored by now
            rows = await intrusions() or []
    finally:
        await forget_session(mqtt_url, client_id)

    assert [(r["tenant"], r["site"], r["device"], r["kind"]) for r in rows] == [
        ("ulsan-refining", SITE, CAMERA, "video.intrusion")
    ] * 3
    tracks = [json.loads(r["detail"])["attributes"]["track_id"] for r in rows]
    assert [t.split("-")[-1] for t in tracks] == ["mxklsc", "walker", "runner"]
    first = json.loads(rows[0]["detail"])
    assert first["attributes"]["zone"] == "tank-farm"
    assert first["attributes"]["frigate_zone"] == "yard"
    assert first["attributes"]["label"] == "person"
    assert rows[0]["confidence"] == pytest.approx(0.958984375)
    box = first["box"]  # [424, 500, 536, 712] of 1920 x 1080
    assert (box["x"], box["y"], box["width"], box["height"]) == pytest.approx(
        (424 / 1920, 500 / 1080, 112 / 1920, 212 / 1080)
    )
    assert rows[0]["snapshot"] is None  # the documented object has no snapshot
    assert rows[1]["snapshot"] == f"http://frigate.plant.example:5000/api/events/{tracks[1]}/snapshot.jpg"

    assert len(letters) == len(bad)
    reasons = {data: headers for _, headers, data in letters}
    for payload, words in bad:
        assert words in reasons[payload][REASON_HEADER]
        assert reasons[payload][SUBJECT_HEADER] == topic
