"""GET /v1/audit through a real hub: an admin reads every kind of row the hub records (keys,
tokens, alarm actions, incident reads and changes), of its own tenant only; other roles may not;
filters and pages work; a bad parameter is named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.audit import AuditEntry, record
from services.common.auth.keys import create_key
from tests.conftest import RunningHub, eventually
from tests.openapi import assert_matches

TENANT, OTHER = "ulsan-refining", "mipo-petrochem"


async def get(hub: RunningHub, path: str, key: str) -> tuple[int, Any]:
    async with hub.session.get(hub.url + path, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json(content_type=None)


async def post(hub: RunningHub, path: str, key: str, body: dict[str, Any], **headers: str) -> int:
    async with hub.session.post(
        hub.url + path, json=body, headers={"Authorization": f"Bearer {key}", **headers}
    ) as response:
        return response.status


async def pages_follow_one_another(hub: RunningHub, admin: str) -> None:
    """Pages follow one another without gap or repeat; a cursor of another query is refused."""
    seen: list[str] = []
    path = "/v1/audit?limit=2"
    while True:
        status, page = await get(hub, path, admin)
        assert status == 200
        seen += [row["id"] for row in page["items"]]
        if page["next"] is None:
            break
        path = f"/v1/audit?limit=2&cursor={page['next']}"
    _, everything = await get(hub, "/v1/audit?limit=500", admin)
    assert seen == [row["id"] for row in everything["items"]]
    _, first = await get(hub, "/v1/audit?limit=2", admin)
    status, problem = await get(hub, f"/v1/audit?limit=2&actor=x&cursor={first['next']}", admin)
    assert status == 400 and problem["errors"][0]["field"] == "cursor"


async def test_an_admin_reads_the_whole_trail_of_its_tenant_and_no_other(running_hub: RunningHub) -> None:
    hub = running_hub
    pool = hub.hub.pool
    admin = await create_key(pool, tenant=TENANT, role="admin")
    operator = await create_key(pool, tenant=TENANT, role="operator")
    mipo_admin = await create_key(pool, tenant=OTHER, role="admin")
    reading = {
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": 30.0,
        "time": (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat(),
        "id": uuid.uuid4().hex,
    }
    async with hub.session.post(
        hub.url + "/v1/observations", json=[reading], headers=hub.auth("gateway")
    ) as response:
        assert response.status == 202

    async def opened() -> str | None:
        return await pool.fetchval("SELECT id FROM incidents WHERE tenant = $1", TENANT)

    incident = await eventually(opened, what="an incident")
    before = datetime.now(UTC)
    # An operator reads the incident and acknowledges the alarm; then comments on the incident.
    assert (await get(hub, f"/v1/incidents/{incident}", operator))[0] == 200
    alarm = "gd-cdu1-101--h2s-high-high"
    status = await post(hub, f"/v1/alarms/{alarm}/ack?site=ulsan-refinery", operator, {"reason": "seen"})
    assert status == 200

    async def commented() -> bool:
        async with hub.session.get(
            f"{hub.url}/v1/incidents/{incident}", headers={"Authorization": f"Bearer {operator}"}
        ) as response:
            tag = response.headers["ETag"]
        return (
            await post(
                hub,
                f"/v1/incidents/{incident}/comments",
                operator,
                {"note": "wind from the east"},
                **{"If-Match": tag},
            )
            == 200
        )

    await eventually(commented, what="the comment (fusion may change the incident meanwhile)")

    status, page = await get(hub, "/v1/audit?limit=500", admin)
    assert status == 200, page
    assert_matches("AuditPage", page)
    actions = {row["action"] for row in page["items"]}
    # Every kind of row: keys made for the test, the alarm action, the incident's reads and change.
    assert {"key.created", "alarm.acknowledged", "incident.read", "incident.commented"} <= actions
    assert all(row["actorKind"] in ("person", "key", "command") for row in page["items"])
    ids = [int(row["id"]) for row in page["items"]]
    assert ids == sorted(ids, reverse=True), "newest first"

    # Filters: the incident's rows; one actor's; since a time.
    status, page = await get(hub, f"/v1/audit?incident={incident}", admin)
    assert status == 200
    assert {row["target"] for row in page["items"]} == {incident}
    assert {"incident.read", "incident.commented"} <= {row["action"] for row in page["items"]}
    operator_id = operator.split("_")[1]
    status, page = await get(hub, f"/v1/audit?actor={operator_id}", admin)
    assert page["items"] and {row["actor"] for row in page["items"]} == {operator_id}
    status, page = await get(hub, f"/v1/audit?since={before.isoformat().replace('+00:00', 'Z')}", admin)
    assert "key.created" not in {row["action"] for row in page["items"]}

    await pages_follow_one_another(hub, admin)

    # The other tenant's admin sees none of it; other roles may not read the trail.
    status, page = await get(hub, "/v1/audit?limit=500", mipo_admin)
    assert status == 200
    assert incident not in str(page) and operator_id not in str(page)
    status, page = await get(hub, f"/v1/audit?incident={incident}", mipo_admin)
    assert page["items"] == []
    for key in (operator, hub.keys["viewer"], hub.keys["gateway"]):
        assert (await get(hub, "/v1/audit", key))[0] == 403


async def test_a_site_limited_admin_sees_its_sites_rows_only(running_hub: RunningHub) -> None:
    pool = running_hub.hub.pool
    admin = await create_key(pool, tenant=TENANT, role="admin")
    east_admin = await create_key(pool, tenant=TENANT, role="admin", sites=["ulsan-refinery-east"])
    async with pool.acquire() as conn:
        for site in ("ulsan-refinery", "ulsan-refinery-east"):
            entry = AuditEntry(
                actor="kim", actor_kind="person", action="incident.read", tenant=TENANT, detail={"site": site}
            )
            await record(conn, entry)

    _, everything = await get(running_hub, "/v1/audit?limit=500", admin)
    status, page = await get(running_hub, "/v1/audit?limit=500", east_admin)

    assert status == 200
    assert {row["detail"].get("site") for row in everything["items"]} >= {
        "ulsan-refinery",
        "ulsan-refinery-east",
    }
    assert "key.created" in {row["action"] for row in everything["items"]}
    assert [row["detail"]["site"] for row in page["items"]] == ["ulsan-refinery-east"]


async def test_a_bad_parameter_is_named(running_hub: RunningHub) -> None:
    admin = await create_key(running_hub.hub.pool, tenant=TENANT, role="admin")
    for query, field in [
        ("since=yesterday", "since"),
        ("since=2026-13-40T00:00:00Z", "since"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("incident=nope", "incident"),
        ("actor=", "actor"),
        ("action=DROP TABLE", "action"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ]:
        status, problem = await get(running_hub, f"/v1/audit?{query}", admin)
        assert status == 400, (query, problem)
        assert problem["errors"][0]["field"] == field, (query, problem)
