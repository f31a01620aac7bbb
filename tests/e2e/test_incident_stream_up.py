"""A responder's day against a real `safetyhub up --workers 2`: a reading posted over HTTP raises
alarms, the incident they open is listed and on the live stream; two responders ack it at once
(one gets 412), it is resolved; a live-stream client that dropped and came back with its
Last-Event-ID (to either worker) saw every change published, once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.channel import ALARM_CHANNEL
from services.incidents.channel import INCIDENT_CHANNEL
from tests.conftest import eventually
from tests.e2e.test_hub_process import HubProcess
from tests.openapi import assert_matches
from tests.sse import SseClient

pytestmark = pytest.mark.e2e

TENANT, SITE = "ulsan-refining", "ulsan-refinery"


async def _published(nats_url: str) -> dict[str, list[tuple[int, str]]]:
    """(stream seq, change id) of every incident change and alarm transition of the tenant."""
    nc = await nats.connect(nats_url)
    found: dict[str, list[tuple[int, str]]] = {"incident": [], "alarm": []}
    try:
        js = nc.jetstream()
        for family, channel in (("incident", INCIDENT_CHANNEL), ("alarm", ALARM_CHANNEL)):
            sub = await js.subscribe(
                f"{channel.prefix}.{TENANT}.>",
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            )
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                while True:
                    msg = await sub.next_msg(timeout=1.0)
                    message = channel.decode(msg.data)
                    found[family].append((msg.metadata.sequence.stream, message.envelope.id))
            await sub.unsubscribe()
    finally:
        await nc.close()
    return found


def _seen(*clients: SseClient) -> dict[str, list[tuple[int, str]]]:
    """(stream seq, change id) of what the clients were sent, from each event's own id."""
    seen: dict[str, list[tuple[int, str]]] = {"incident": [], "alarm": []}
    for client in clients:
        for event in client.events:
            assert event.id is not None and event.event is not None
            incidents, alarms = (int(part) for part in event.id.split("-"))
            if event.event.startswith("incident."):
                seen["incident"].append((incidents, event.json()["entry"]["id"]))
            elif event.event == "alarm.transition":
                seen["alarm"].append((alarms, event.json()["transition_id"]))
    return seen


class Responders:
    """Two responders' phones and a gateway on the hub's one HTTP port."""

    def __init__(self, session: aiohttp.ClientSession, url: str, keys: dict[str, str]) -> None:
        self.session, self.url, self.keys = session, url, keys
        self.auth = {"Authorization": f"Bearer {keys['first']}", "Accept-Language": "en"}

    async def open_stream(self, **headers: str) -> SseClient:
        response = await self.session.get(f"{self.url}/v1/stream", headers={**self.auth, **headers})
        assert response.status == 200, await response.text()
        client = SseClient(response)
        await client.wait_for(lambda c: c.last_id is not None, what="the opening id")
        return client

    async def post_h2s(self, value: float) -> None:
        reading = {
            "id": f"e2e-{uuid.uuid4().hex[:8]}",
            "site": SITE,
            "device": "gd-fcc2-203",
            "kind": "gas.h2s",
            "unit": "ppm",
            "value": value,
            "time": datetime.now(UTC).isoformat(),
        }
        headers = {"Authorization": f"Bearer {self.keys['gateway']}"}
        async with self.session.post(
            f"{self.url}/v1/observations", json=[reading], headers=headers
        ) as response:
            assert response.status == 202

    async def listed(self) -> dict[str, Any] | None:
        async with self.session.get(
            f"{self.url}/v1/incidents?type=gas_release", headers=self.auth
        ) as response:
            assert response.status == 200
            items: list[dict[str, Any]] = (await response.json())["items"]
        return items[0] if items else None

    async def etag(self, path: str) -> str:
        async with self.session.get(path, headers=self.auth) as response:
            assert response.status == 200
            return response.headers["ETag"]

    async def settled_tag(self, path: str) -> str | None:
        # Fusion goes on adding the alarms the engine's timers raise; take the incident once it
        # held still for a second, as a responder's screen would show it.
        tag = await self.etag(path)
        await asyncio.sleep(1.0)
        return tag if await self.etag(path) == tag else None

    async def post(self, path: str, who: str, tag: str, body: dict[str, Any]) -> int:
        headers = {"Authorization": f"Bearer {self.keys[who]}", "If-Match": tag}
        async with self.session.post(path, json=body, headers=headers) as response:
            return response.status


def _has(change: str, incident_id: str) -> Callable[[SseClient], bool]:
    def probe(client: SseClient) -> bool:
        return any(
            e.event == f"incident.{change}" and e.json()["incident"]["id"] == incident_id
            for e in client.events
        )

    return probe


async def test_reading_to_incident_on_the_list_and_the_stream_ack_race_resolve_and_resume(
    workdir: Path,
) -> None:
    hub = HubProcess(workdir, "--workers", "2")
    try:
        info = await hub.ready()
        keys = {name: hub.key(TENANT, role) for name, role in
                (("gateway", "gateway"), ("first", "responder"), ("second", "responder"))}  # fmt: skip
        async with aiohttp.ClientSession() as session:
            phones = Responders(session, info["http_url"], keys)
            live = await phones.open_stream()
            await phones.post_h2s(25.0)
            incident = await eventually(phones.listed, timeout=30, what="the gas release listed")
            await live.wait_for(_has("opened", incident["id"]), what="the incident opened on the live stream")
            on_stream = next(e for e in live.events if e.event == "incident.opened").json()
            assert_matches("IncidentStreamChange", on_stream)
            assert on_stream["incident"]["title"] == "Gas release in fcc-2"
            # The phone drops off; what follows happens while it is away.
            dropped_at = live.last_id
            await live.close()

            path = f"{phones.url}/v1/incidents/{incident['id']}"
            tag = await eventually(
                lambda: phones.settled_tag(path), timeout=30, what="the incident to hold still"
            )
            acks = await asyncio.gather(
                phones.post(path + "/ack", "first", tag, {}), phones.post(path + "/ack", "second", tag, {})
            )
            assert sorted(acks) == [200, 412]
            resolve = {"code": "leak_isolated", "note": "valve closed"}
            assert await phones.post(path + "/resolve", "first", await phones.etag(path), resolve) == 200

            back = await phones.open_stream(**{"Last-Event-ID": dropped_at or ""})
            await back.wait_for(_has("resolved", incident["id"]), what="the resolution on the resumed stream")
            acked = [e for e in back.events if e.event == "incident.acknowledged"]
            assert len(acked) == 1 and acked[0].json()["incident"]["status"] == "acknowledged"
            end = back.last_id or ""
            await back.close()

        # Everything published up to where the resumed stream got, sent once, in order.
        published = await _published(info["nats_url"])
        seen = _seen(live, back)
        upto = dict(zip(("incident", "alarm"), (int(p) for p in end.split("-")), strict=True))
        for family in ("incident", "alarm"):
            assert seen[family] == [p for p in published[family] if p[0] <= upto[family]], family
        assert seen["alarm"]  # the H2S alarms themselves went out too
    finally:
        assert hub.stop() == 0
