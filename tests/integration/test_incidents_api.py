"""The incident API through the real bus and database: readings posted over HTTP -> alarm ->
incident listed -> ack with If-Match -> resolve; concurrent acks; scoping; bad queries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from services.common.auth.keys import create_key
from tests.conftest import RunningHub, eventually
from tests.openapi import assert_matches

SITE = "ulsan-refinery"
TENANT = "ulsan-refining"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
# gd-fcc2-203's position in the demo site file.
FCC2_203 = (35.47782, 129.35544)


def h2s(device: str, seconds: float, value: float) -> dict[str, Any]:
    return {
        "site": SITE,
        "device": device,
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": value,
        "time": (BASE + timedelta(seconds=seconds)).isoformat(),
        "id": f"{device}-{seconds}-{uuid.uuid4().hex[:6]}",
    }


async def keys(hub: RunningHub) -> dict[str, str]:
    pool = hub.hub.pool
    return {
        "responder": await create_key(pool, tenant=TENANT, role="responder"),
        "operator": await create_key(pool, tenant=TENANT, role="operator"),
        "mipo_operator": await create_key(pool, tenant="mipo-petrochem", role="operator"),
        "east_only": await create_key(pool, tenant=TENANT, role="responder", sites=["ulsan-refinery-east"]),
    }


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def get(
    hub: RunningHub, path: str, key: str, **headers: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with hub.session.get(hub.url + path, headers=bearer(key, **headers)) as response:
        return response.status, await response.json(content_type=None), response


async def post(
    hub: RunningHub, path: str, key: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with hub.session.post(hub.url + path, json=body or {}, headers=bearer(key, **headers)) as response:
        return response.status, await response.json(content_type=None), response


async def a_gas_release(hub: RunningHub, key: str) -> dict[str, Any]:
    async with hub.session.post(
        hub.url + "/v1/observations", json=[h2s("gd-fcc2-203", 0, 25.0)], headers=hub.auth("gateway")
    ) as response:
        assert response.status == 202

    async def listed() -> dict[str, Any] | None:
        status, body, _ = await get(hub, "/v1/incidents?type=gas_release&status=open", key)
        assert status == 200, body
        return body["items"][0] if body["items"] else None

    found = await eventually(listed, what="the gas release listed")
    # Fusion goes on changing it (each alarm that joins is a new version) as the alarm engine's
    # timers fire: the high's on-delay, the voting group, the stale detector. Wait until it holds
    # still, as a responder's screen would have refreshed by then.
    path = f"/v1/incidents?type=gas_release&site={SITE}"
    last: dict[str, Any] = {}

    async def settled() -> dict[str, Any] | None:
        nonlocal last
        _, body, _ = await get(hub, path, key)
        now = next(item for item in body["items"] if item["id"] == found["id"])
        if now["alarms"] >= 3 and now == last:
            return now
        last = now
        await asyncio.sleep(1.0)
        return None

    return await eventually(settled, what="the gas release to hold still")


async def test_a_responder_finds_takes_and_resolves_the_incident(running_hub: RunningHub) -> None:
    k = await keys(running_hub)
    listed = await a_gas_release(running_hub, k["responder"])
    assert_matches("Incident", listed)
    assert listed["site"] == SITE and listed["zones"] == ["fcc-2"]
    assert listed["severity"] == "Extreme" and listed["language"] == "ko"  # a Korean site
    incident = f"/v1/incidents/{listed['id']}"

    status, detail, response = await get(running_hub, incident, k["responder"], **{"Accept-Language": "en"})
    assert status == 200
    assert_matches("IncidentDetail", detail)
    assert detail["incident"]["title"] == "Gas release in fcc-2"
    assert detail["timeline"][0]["change"] == "opened"
    assert any("breathing apparatus" in a for a in detail["actions"])  # the H2S rule's action
    tag = response.headers["ETag"]

    # No If-Match: 428; a stale one: 412.
    status, problem, _ = await post(running_hub, incident + "/ack", k["responder"])
    assert status == 428, problem
    status, problem, _ = await post(running_hub, incident + "/ack", k["responder"], **{"If-Match": '"999"'})
    assert status == 412 and problem["incidentStatus"] == "open"

    status, acked, response = await post(
        running_hub, incident + "/ack", k["responder"], {"note": "on my way"}, **{"If-Match": tag}
    )
    assert status == 200, acked
    assert_matches("IncidentDetail", acked)
    assert acked["incident"]["status"] == "acknowledged"
    assert acked["incident"]["assignee"] is not None  # acknowledging took it
    assert response.headers["ETag"] != tag
    tag = response.headers["ETag"]

    status, problem, _ = await post(
        running_hub, incident + "/resolve", k["responder"], {}, **{"If-Match": tag}
    )
    assert status == 422 and problem["errors"][0]["field"] == "code"
    status, resolved, response = await post(
        running_hub,
        incident + "/resolve",
        k["responder"],
        {"code": "leak_isolated", "note": "flange retightened"},
        **{"If-Match": tag},
    )
    assert status == 200, resolved
    assert resolved["incident"]["status"] == "resolved"
    assert resolved["incident"]["resolution"] == {"code": "leak_isolated", "note": "flange retightened"}
    tag = response.headers["ETag"]
    status, closed, response = await post(
        running_hub, incident + "/close", k["responder"], **{"If-Match": tag}
    )
    assert status == 200, closed

    # Resolving a closed incident: 409 naming the status.
    tag = response.headers["ETag"]
    status, problem, _ = await post(
        running_hub, incident + "/resolve", k["responder"], {"code": "other"}, **{"If-Match": tag}
    )
    assert status == 409 and problem["incidentStatus"] == "closed"
    assert "closed" in problem["detail"]

    # Every change is in the timeline and the audit trail.
    status, detail, _ = await get(running_hub, incident, k["responder"])
    people = [e["change"] for e in detail["timeline"] if e["actor"] != "system"]
    assert people == ["acknowledged", "resolved", "closed"]
    audited = await running_hub.hub.pool.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY id", listed["id"]
    )
    assert [r["action"] for r in audited if r["action"] != "incident.read"] == [
        "incident.acknowledged",
        "incident.resolved",
        "incident.closed",
    ]
    assert sum(r["action"] == "incident.read" for r in audited) == 2  # the two reads of its details


async def test_two_responders_acking_at_once_one_gets_412(running_hub: RunningHub) -> None:
    k = await keys(running_hub)
    second = await create_key(running_hub.hub.pool, tenant=TENANT, role="responder")
    listed = await a_gas_release(running_hub, k["responder"])
    incident = f"/v1/incidents/{listed['id']}"
    _, _, response = await get(running_hub, incident, k["responder"])
    tag = response.headers["ETag"]

    answers = await asyncio.gather(
        post(running_hub, incident + "/ack", k["responder"], **{"If-Match": tag}),
        post(running_hub, incident + "/ack", second, **{"If-Match": tag}),
    )
    assert sorted(status for status, _, _ in answers) == [200, 412]
    status, detail, _ = await get(running_hub, incident, k["responder"])
    assert status == 200
    assert [e["change"] for e in detail["timeline"]].count("acknowledged") == 1


async def test_roles_and_tenants_see_and_do_only_what_they_may(running_hub: RunningHub) -> None:
    k = await keys(running_hub)
    listed = await a_gas_release(running_hub, k["responder"])
    incident = f"/v1/incidents/{listed['id']}"
    _, _, response = await get(running_hub, incident, k["operator"])
    tag = {"If-Match": response.headers["ETag"]}

    # Another tenant, or a key limited to another site: the incident does not exist for them.
    for key in (k["mipo_operator"], k["east_only"]):
        status, _, _ = await get(running_hub, incident, key)
        assert status == 404
        status, page, _ = await get(running_hub, "/v1/incidents", key)
        assert status == 200 and all(item["id"] != listed["id"] for item in page["items"])
        status, _, _ = await post(running_hub, incident + "/ack", key, **tag)
        assert status in (403, 404)
    status, _, _ = await post(running_hub, incident + "/ack", k["mipo_operator"], **tag)
    assert status == 404
    # A viewer reads but may not act; a responder may not assign; an operator may.
    viewer = running_hub.keys["viewer"]
    assert (await get(running_hub, incident, viewer))[0] == 200
    assert (await post(running_hub, incident + "/ack", viewer, **tag))[0] == 403
    assert (await post(running_hub, incident + "/assign", k["responder"], {"assignee": "team-b"}, **tag))[
        0
    ] == 403
    status, assigned, _ = await post(
        running_hub, incident + "/assign", k["operator"], {"assignee": "team-b"}, **tag
    )
    assert status == 200 and assigned["incident"]["assignee"] == "team-b"
    # An unknown id is 404 like another tenant's.
    assert (await get(running_hub, "/v1/incidents/01M809PETR5H7MZ0A9QK3W8XJT", k["operator"]))[0] == 404
    assert (await get(running_hub, "/v1/incidents/not-an-id", k["operator"]))[0] == 404


async def test_near_sorts_by_distance_and_bad_queries_name_their_parameter(running_hub: RunningHub) -> None:
    k = await keys(running_hub)
    await a_gas_release(running_hub, k["responder"])
    lat, lon = FCC2_203
    status, page, _ = await get(running_hub, f"/v1/incidents?near={lat},{lon}&radius_m=50", k["responder"])
    assert status == 200, page
    assert page["items"] and page["items"][0]["distanceM"] < 50
    distances = [item["distanceM"] for item in page["items"]]
    assert distances == sorted(distances)
    status, far, _ = await get(
        running_hub, "/v1/incidents?near=37.5665,126.9780&radius_m=1000", k["responder"]
    )
    assert status == 200 and far["items"] == []  # Seoul is 300 km away

    for query, field in [
        ("near=35.4,abc", "near"),
        ("near=95,129", "near"),
        ("radius_m=10", "radius_m"),
        ("since=yesterday", "since"),
        ("status=burning", "status"),
        ("limit=0", "limit"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
    ]:
        status, problem, _ = await get(running_hub, f"/v1/incidents?{query}", k["responder"])
        assert status == 400, query
        assert problem["errors"][0]["field"] == field, query

    # A cursor from another query is refused, not read as a position in this one.
    # The stale detector's communication loss is a second incident: there is a second page.
    async def paged() -> dict[str, Any] | None:
        _, page, _ = await get(running_hub, "/v1/incidents?limit=1", k["responder"])
        return page if page["next"] is not None else None

    page = await eventually(paged, what="a second incident, for a second page")
    status, second, _ = await get(running_hub, f"/v1/incidents?limit=1&cursor={page['next']}", k["responder"])
    assert status == 200 and second["items"][0]["id"] != page["items"][0]["id"]
    status, problem, _ = await get(
        running_hub, f"/v1/incidents?limit=1&status=open&cursor={page['next']}", k["responder"]
    )
    assert status == 400 and problem["errors"][0]["field"] == "cursor"
