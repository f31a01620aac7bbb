"""GET /v1/stream against a real hub, NATS JetStream and PostgreSQL: what each caller sees (its
tenant, its sites, the types it asked for), heartbeats, resuming with Last-Event-ID, a client too
slow to keep up, refusals, and the stream ending when the hub stops.

Incident changes are published on INCIDENTS as the incidents service publishes them (the same
subjects, headers and protobuf), so each test knows exactly what was published and can compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec
import nats
import pytest
from nats.js import JetStreamContext

from services.common.auth.keys import create_key
from services.common.auth.principal import ROLES
from services.common.contracts import AlarmState, AlarmTransition, IncidentChange, incident_change_type
from services.common.contracts.cloudevents import ce_headers
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.adapters.messages import STATUS, TYPE
from services.incidents.config import IncidentsConfig
from services.incidents.domain.model import IncidentType, Status
from tests.conftest import REPO, hub_config
from tests.openapi import assert_matches
from tests.sse import SseClient

pytestmark = pytest.mark.integration

ULSAN, MIPO = "ulsan-refining", "mipo-petrochem"
REFINERY, EAST, AROMATICS = "ulsan-refinery", "ulsan-refinery-east", "mipo-aromatics"
HEARTBEAT_S = 0.3
QUEUE_MAX = 20
READERS = {"viewer", "responder", "operator", "admin"}


@dataclass
class StreamHub:
    hub: Hub
    url: str
    js: JetStreamContext
    keys: dict[str, str]
    session: aiohttp.ClientSession
    stopped: bool = False

    async def stop(self) -> None:
        self.stopped = True
        await self.hub.stop()

    async def open(self, key: str, query: str = "", **headers: str) -> SseClient:
        response = await self.session.get(
            f"{self.url}/v1/stream{query}",
            headers={"Authorization": f"Bearer {self.keys[key]}", **headers},
        )
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        client = SseClient(response)
        # The opening block: retry, and the id to resume from (an id of its own when fresh).
        await client.wait_for(lambda c: c.blocks, what="the opening block")
        assert client.blocks[0].retry == 2000
        return client

    async def change(
        self, tenant: str, site: str, type_: IncidentType, change: str = "opened", *, what: str = ""
    ) -> tuple[int, str]:
        """Publish one incident change as the incidents service does; its stream seq and entry id."""
        incident_id = uuid.uuid4().hex[:26].upper()
        entry_id = uuid.uuid4().hex
        message = IncidentChange(incident_id=incident_id)
        message.envelope.id, message.envelope.tenant, message.envelope.site = entry_id, tenant, site
        message.envelope.type = incident_change_type(change)
        message.entry.id, message.entry.change, message.entry.actor = entry_id, change, "system"
        message.entry.what = what or f"{type_} {change}"
        message.entry.status = STATUS[Status.OPEN]  # type: ignore[assignment]
        message.entry.time.GetCurrentTime()
        message.incident.incident_id = incident_id
        message.incident.type = TYPE[type_]  # type: ignore[assignment]
        message.incident.status = STATUS[Status.OPEN]  # type: ignore[assignment]
        message.incident.opened_at.GetCurrentTime()
        message.incident.updated_at.GetCurrentTime()
        message.incident.title.en, message.incident.title.ko = f"{type_} at {site}", f"{site} {type_}"
        message.incident.version = 1
        headers = ce_headers(id=entry_id, type=incident_change_type(change), source="/incidents", time="")
        ack = await self.js.publish(
            f"incident.{tenant}.{site}.{incident_id}", message.SerializeToString(), headers=headers
        )
        return ack.seq, entry_id


def entry_ids(client: SseClient) -> list[str]:
    return [e.json()["entry"]["id"] for e in client.events if e.event and e.event.startswith("incident.")]


@contextlib.asynccontextmanager
async def stream_hub(nats_url: str, database_url: str) -> AsyncIterator[StreamHub]:
    incidents = IncidentsConfig(stream_heartbeat_s=HEARTBEAT_S, stream_queue_max=QUEUE_MAX)
    hub = Hub(hub_config(incidents=incidents), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    nc = await nats.connect(nats_url)
    running: StreamHub | None = None
    try:
        keys = {
            "responder": await create_key(hub.pool, tenant=ULSAN, role="responder"),
            "east_only": await create_key(hub.pool, tenant=ULSAN, role="viewer", sites=[EAST]),
            "mipo": await create_key(hub.pool, tenant=MIPO, role="operator"),
            "gateway": await create_key(hub.pool, tenant=ULSAN, role="gateway"),
        }
        async with aiohttp.ClientSession() as session:
            running = StreamHub(hub, hub.http_url, nc.jetstream(), keys, session)
            yield running
    finally:
        await nc.close()
        if running is None or not running.stopped:
            await hub.stop()


@pytest.fixture
async def shub(nats_url: str, database_url: str) -> AsyncIterator[StreamHub]:
    async with stream_hub(nats_url, database_url) as running:
        yield running


async def test_each_caller_sees_its_tenant_its_sites_and_the_types_it_asked_for(shub: StreamHub) -> None:
    everything = await shub.open("responder")
    east_fires = await shub.open("responder", f"?site={EAST}&type=fire")
    east_key = await shub.open("east_only")
    mipo = await shub.open("mipo", **{"Accept-Language": "en"})

    _, refinery_gas = await shub.change(ULSAN, REFINERY, IncidentType.GAS_RELEASE)
    _, east_fire = await shub.change(ULSAN, EAST, IncidentType.FIRE)
    _, east_gas = await shub.change(ULSAN, EAST, IncidentType.GAS_RELEASE)
    _, mipo_fire = await shub.change(MIPO, AROMATICS, IncidentType.FIRE, "acknowledged")

    # Markers last: each stream is in publish order, so a change wrongly let through to a client
    # would reach it before its marker, and the lists below are exact once the markers are in.
    _, marker = await shub.change(ULSAN, EAST, IncidentType.FIRE)
    _, mipo_marker = await shub.change(MIPO, AROMATICS, IncidentType.FIRE)
    for client in (everything, east_fires, east_key):
        await client.wait_for(lambda c: marker in entry_ids(c), what="the marker")
    await mipo.wait_for(lambda c: mipo_marker in entry_ids(c), what="the other tenant's marker")

    assert entry_ids(everything) == [refinery_gas, east_fire, east_gas, marker]
    assert entry_ids(east_fires) == [east_fire, marker]
    assert entry_ids(east_key) == [east_fire, east_gas, marker]
    assert entry_ids(mipo) == [mipo_fire, mipo_marker]  # another tenant's changes never appear

    opened = everything.events[0]
    assert opened.event == "incident.opened"
    body = opened.json()
    assert_matches("IncidentStreamChange", body)
    assert body["incident"]["site"] == REFINERY and body["incident"]["type"] == "gas_release"
    assert body["incident"]["language"] == "ko"  # a Korean site, no Accept-Language
    assert mipo.events[0].event == "incident.acknowledged"
    assert mipo.events[0].json()["incident"]["language"] == "en"
    # Ids only grow: a client that resumes from any of them misses none of the later ones.
    ids = [tuple(map(int, e.id.split("-"))) for e in everything.events if e.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for client in (everything, east_fires, east_key, mipo):
        await client.close()


async def test_alarm_transitions_go_to_those_who_asked_for_alarms(shub: StreamHub) -> None:
    alarms_only = await shub.open("responder", "?type=alarm")
    fires_only = await shub.open("responder", "?type=fire")
    transition = AlarmTransition(alarm_id="gd-x--rule", old_state=AlarmState.ALARM_STATE_NORM)
    transition.new_state = AlarmState.ALARM_STATE_UNACK
    env = transition.envelope
    env.id, env.tenant, env.site = uuid.uuid4().hex, ULSAN, REFINERY
    env.time.GetCurrentTime()
    transition.alarm.device, transition.alarm.rule, transition.alarm.active = "gd-x", "rule", True
    headers = ce_headers(id=env.id, type="org.safetyhub.alarm.transition.v1", source="/alarms", time="")
    await shub.js.publish(
        f"alarm.{ULSAN}.{REFINERY}.gd-x--rule", transition.SerializeToString(), headers=headers
    )
    _, fire = await shub.change(ULSAN, REFINERY, IncidentType.FIRE)

    await alarms_only.wait_for(lambda c: c.events, what="the alarm transition")
    await fires_only.wait_for(lambda c: c.events, what="the fire")
    [alarm] = alarms_only.events
    assert alarm.event == "alarm.transition"
    assert_matches("AlarmStreamChange", alarm.json())
    assert (alarm.json()["id"], alarm.json()["state"]) == ("gd-x--rule", "UNACK")
    assert entry_ids(fires_only) == [fire] and len(fires_only.events) == 1
    await alarms_only.close()
    await fires_only.close()


async def test_an_idle_stream_has_heartbeats(shub: StreamHub) -> None:
    client = await shub.open("responder")
    await client.wait_for(lambda c: sum("heartbeat" in b.comments for b in c.blocks) >= 3, timeout=5)
    assert not client.events
    await client.close()


async def test_a_client_that_reconnects_with_its_last_id_misses_nothing(shub: StreamHub) -> None:
    first = await shub.open("responder")
    opening_id = first.last_id
    published = [(await shub.change(ULSAN, REFINERY, IncidentType.GAS_RELEASE))[1] for _ in range(3)]
    await first.wait_for(lambda c: len(entry_ids(c)) == 3, what="the first three")
    last_id = first.last_id
    await first.close()

    # While it is away: changes of its own, of sites and tenants it does not see, and alarms.
    missed = []
    for n in range(12):
        missed.append((await shub.change(ULSAN, EAST if n % 2 else REFINERY, IncidentType.FIRE))[1])
        await shub.change(MIPO, AROMATICS, IncidentType.FIRE)

    again = await shub.open("responder", **{"Last-Event-ID": last_id or ""})
    await again.wait_for(lambda c: len(entry_ids(c)) == len(missed), what="what it missed")
    later = (await shub.change(ULSAN, REFINERY, IncidentType.GAS_RELEASE))[1]
    await again.wait_for(lambda c: later in entry_ids(c), what="the next live change")
    assert entry_ids(again) == [*missed, later]  # in order, none twice, none of another tenant's

    # From the opening id (before any change), everything since.
    from_start = await shub.open("responder", **{"Last-Event-ID": opening_id or ""})
    await from_start.wait_for(lambda c: later in entry_ids(c), what="everything since the opening")
    assert entry_ids(from_start) == [*published, *missed, later]
    await again.close()
    await from_start.close()


async def test_an_id_from_before_the_streams_were_created_anew_gets_all_they_hold(shub: StreamHub) -> None:
    # After a disaster recovery the streams start their sequences again: an id a phone kept
    # from before is past them, and must not make it skip what they hold now as "sent".
    held = [(await shub.change(ULSAN, REFINERY, IncidentType.FIRE))[1] for _ in range(2)]
    client = await shub.open("responder", **{"Last-Event-ID": "999999-999999"})
    await client.wait_for(lambda c: len(entry_ids(c)) == 2, what="what the streams hold")
    later = (await shub.change(ULSAN, REFINERY, IncidentType.FIRE))[1]
    await client.wait_for(lambda c: later in entry_ids(c), what="the next live change")
    assert entry_ids(client) == [*held, later]
    await client.close()


async def test_a_client_too_slow_to_keep_up_is_told_and_resumes_without_a_gap(shub: StreamHub) -> None:
    response = await shub.session.get(
        f"{shub.url}/v1/stream?site={REFINERY}", headers={"Authorization": f"Bearer {shub.keys['responder']}"}
    )
    assert response.status == 200
    # It reads nothing while 600 large changes go out: the socket fills, the server's writes
    # wait, its queue of QUEUE_MAX fills, and the process holds no more for it.
    padding = "x" * 8_000
    published = [
        (await shub.change(ULSAN, REFINERY, IncidentType.GAS_RELEASE, what=padding))[1] for _ in range(600)
    ]
    client = SseClient(response)
    await client.wait_for(lambda c: c.ended, timeout=30, what="the end of the stream")
    behind = [e for e in client.events if e.event == "stream.behind"]
    assert len(behind) == 1 and client.events[-1] is behind[0]
    assert behind[0].json()["lastEventId"] == behind[0].id == client.last_id
    got = entry_ids(client)
    assert 0 < len(got) < len(published) and got == published[: len(got)]

    resumed = await shub.open("responder", f"?site={REFINERY}", **{"Last-Event-ID": client.last_id or ""})
    await resumed.wait_for(lambda c: len(entry_ids(c)) == len(published) - len(got), timeout=30)
    assert got + entry_ids(resumed) == published
    await resumed.close()


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("", {"Last-Event-ID": "yesterday"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "12"}, "Last-Event-ID"),
        ("?type=flood", {}, "type"),
        ("?site=NOT_A_SITE", {}, "site"),
        ("?since=2026-01-01T00:00:00Z", {}, "since"),
    ],
)
async def test_bad_requests_are_400_naming_what_is_wrong(
    shub: StreamHub, query: str, headers: dict[str, str], field: str
) -> None:
    async with shub.session.get(
        f"{shub.url}/v1/stream{query}",
        headers={"Authorization": f"Bearer {shub.keys['responder']}", **headers},
    ) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        problem = msgspec.json.decode(await response.read())
        assert problem["errors"][0]["field"] == field


async def test_who_may_not_watch_is_refused(shub: StreamHub) -> None:
    url = f"{shub.url}/v1/stream"
    async with shub.session.get(url) as response:
        assert response.status == 401
    async with shub.session.get(url, headers={"Authorization": f"Bearer {shub.keys['gateway']}"}) as response:
        assert response.status == 403  # a gateway posts readings; it reads no incidents
    async with shub.session.get(
        f"{url}?site={REFINERY}", headers={"Authorization": f"Bearer {shub.keys['east_only']}"}
    ) as response:
        assert response.status == 403
    async with shub.session.get(
        f"{url}?site={AROMATICS}", headers={"Authorization": f"Bearer {shub.keys['responder']}"}
    ) as response:
        assert response.status == 403  # another tenant's site


async def test_streams_end_when_the_hub_stops(nats_url: str, database_url: str) -> None:
    async with stream_hub(nats_url, database_url) as running:
        clients = [await running.open("responder") for _ in range(3)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.ensure_future(running.stop())
        for client in clients:
            await client.wait_for(lambda c: c.ended, timeout=5, what="the stream to end")
        await stopping
        # Well within the HTTP drain's bound: the streams did not hold the shutdown.
        assert loop.time() - started < 5


async def test_every_role_of_both_tenants(shub: StreamHub) -> None:
    # Readers of each tenant get a stream of their own tenant's changes only; others get 403.
    keys = {
        (tenant, role): await create_key(shub.hub.pool, tenant=tenant, role=role)
        for tenant in (ULSAN, MIPO)
        for role in ROLES
    }
    streams: dict[tuple[str, str], SseClient] = {}
    for (tenant, role), key in keys.items():
        shub.keys[f"{tenant}/{role}"] = key
        if role in READERS:
            streams[tenant, role] = await shub.open(f"{tenant}/{role}")
            continue
        async with shub.session.get(
            f"{shub.url}/v1/stream", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            assert response.status == 403, (tenant, role)
            assert response.content_type == "application/problem+json"
    assert len(streams) == 2 * len(READERS)
    # Each tenant's last change comes after one of the other's: a leak would show before it.
    _, mipo_first = await shub.change(MIPO, AROMATICS, IncidentType.FIRE)
    _, ulsan = await shub.change(ULSAN, REFINERY, IncidentType.GAS_RELEASE)
    _, mipo_last = await shub.change(MIPO, AROMATICS, IncidentType.FIRE)
    expected = {ULSAN: [ulsan], MIPO: [mipo_first, mipo_last]}
    for (tenant, role), client in streams.items():
        last = expected[tenant][-1]
        await client.wait_for(lambda c, last=last: last in entry_ids(c), what=f"{tenant} {role}'s changes")
        assert entry_ids(client) == expected[tenant], (tenant, role)
        await client.close()
