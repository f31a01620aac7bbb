"""GET /v1/alarms, /v1/alarms/{id} and /v1/alarms/kpis over HTTP on a real hub and PostgreSQL,
reading rows written into the alarm engine's tables, answers checked against openapi.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, hub_config
from tests.integration.alarm_read_hub import ALARM_READ_REGISTRY
from tests.integration.alarm_rows import (
    PointRow,
    TransitionRow,
    insert_flood,
    insert_points,
    insert_transitions,
)
from tests.integration.test_alarm_kpi_query import DAY_END, DAY_START, at, scripted_day
from tests.openapi import assert_matches

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
NOW = datetime.now(UTC).replace(microsecond=0)
REFINING, REFINERY, EAST = "ulsan-refining", "ulsan-refinery", "ulsan-refinery-east"


@dataclass
class AlarmHub:
    hub: Hub
    keys: dict[str, str]
    session: aiohttp.ClientSession

    async def get(
        self, path: str, key: str = "viewer", params: Any = None
    ) -> tuple[int, str, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        async with self.session.get(self.hub.http_url + path, params=params, headers=headers) as resp:
            return resp.status, resp.content_type, msgspec.json.decode(await resp.read())


@pytest.fixture
async def alarm_hub(tmp_path: Path, nats_url: str, database_url: str) -> AsyncIterator[AlarmHub]:
    config = hub_config(sites_reload_s=0)
    hub = Hub(config, REPO, Endpoints(nats_url, database_url), service_registry=ALARM_READ_REGISTRY)
    await hub.start()
    keys = {
        "viewer": await create_key(hub.pool, tenant=REFINING, role="viewer"),
        "operator": await create_key(hub.pool, tenant=REFINING, role="operator"),
        "gateway": await create_key(hub.pool, tenant=REFINING, role="gateway"),
        "east_viewer": await create_key(hub.pool, tenant=REFINING, role="viewer", sites=[EAST]),
        "mipo_viewer": await create_key(hub.pool, tenant="mipo-petrochem", role="viewer"),
    }
    async with aiohttp.ClientSession() as session:
        yield AlarmHub(hub, keys, session)
    await hub.stop()


def ago(minutes: int) -> datetime:
    return NOW - timedelta(minutes=minutes)


# The refinery's points: ids are '<device>--<rule>' with rules of the shipped demo rules.
LEL_HH = PointRow(
    REFINING,
    REFINERY,
    "gd-fcc2-201",
    "lel-high-high",
    "emergency",
    "high_high",
    state="UNACK",
    active=True,
    latched=True,
    changed_at=ago(5),
)
LEL_H_1 = PointRow(
    REFINING, REFINERY, "gd-fcc2-201", "lel-high", "high", state="ACKED", active=True, changed_at=ago(10)
)
LEL_H_2 = PointRow(
    REFINING, REFINERY, "gd-fcc2-202", "lel-high", "high", state="UNACK", active=True, changed_at=ago(3)
)
LEL_H_3 = PointRow(REFINING, REFINERY, "gd-fcc2-203", "lel-high", "high", state="RTNUN", changed_at=ago(20))
STALE = PointRow(
    REFINING,
    REFINERY,
    "gd-fcc2-203",
    "gas-lel-stale",
    "medium",
    "stale",
    "system",
    state="SHLVD",
    active=True,
    shelved_until=NOW + timedelta(hours=1),
    changed_at=ago(8),
)
QUIET = PointRow(REFINING, REFINERY, "gd-fcc2-204", "lel-high", "high")  # never changed: NORM
CLEARED = PointRow(REFINING, REFINERY, "gd-fcc2-202", "h2s-high", "high", state="NORM", changed_at=ago(30))
REMOVED = PointRow(
    REFINING, REFINERY, "gd-fcc2-204", "retired-rule", "low", state="UNACK", active=True, changed_at=ago(1)
)
EAST_H = PointRow(
    REFINING, EAST, "gd-hcr1-101", "lel-high", "high", state="UNACK", active=True, changed_at=ago(2)
)
# Another tenant's point with the very id of one of the refinery's, at its own site.
MIPO = PointRow(
    "mipo-petrochem",
    "mipo-aromatics",
    "gd-fcc2-201",
    "lel-high",
    "high",
    state="UNACK",
    active=True,
    changed_at=ago(1),
)
POINTS = [LEL_HH, LEL_H_1, LEL_H_2, LEL_H_3, STALE, QUIET, CLEARED, REMOVED, EAST_H, MIPO]


def ids(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["site"], item["id"]) for item in body["items"]]


async def test_the_list_is_the_tenants_most_urgent_first(alarm_hub: AlarmHub) -> None:
    await insert_points(alarm_hub.hub.pool, POINTS)

    status, content_type, body = await alarm_hub.get("/v1/alarms")

    assert (status, content_type) == (200, "application/json")
    assert_matches("AlarmPage", body)
    # Emergency, then high by latest change (the east site's at 2 min ago among them; a point
    # that never changed last), then medium, then low; nothing of mipo-petrochem.
    assert ids(body) == [
        (REFINERY, LEL_HH.alarm_id),
        (EAST, EAST_H.alarm_id),
        (REFINERY, LEL_H_2.alarm_id),
        (REFINERY, LEL_H_1.alarm_id),
        (REFINERY, LEL_H_3.alarm_id),
        (REFINERY, CLEARED.alarm_id),
        (REFINERY, QUIET.alarm_id),
        (REFINERY, STALE.alarm_id),
        (REFINERY, REMOVED.alarm_id),
    ]
    assert body["next"] is None
    first = body["items"][0]
    assert first["state"] == "UNACK" and first["latched"] is True and first["class"] == "safety"
    # The rule's rationale from the shipped rules, in both languages.
    assert first["rationale"]["cause"]["en"] == "Combustible gas above 40 %LEL: a major release"
    assert first["rationale"]["action"]["ko"].startswith("해당 구역 비상정지")
    assert first["rationale"]["time_to_respond_s"] == 60
    shelved = next(i for i in body["items"] if i["id"] == STALE.alarm_id)
    assert shelved["shelved_until"] == STALE.shelved_until.isoformat()  # type: ignore[union-attr]
    # A rule no longer in the rules in use: the alarm still shows, without a rationale.
    assert body["items"][-1]["rationale"] is None


async def test_states_and_priorities_filter_the_list(alarm_hub: AlarmHub) -> None:
    await insert_points(alarm_hub.hub.pool, POINTS)

    _, _, active = await alarm_hub.get("/v1/alarms", params={"state": "active", "site": REFINERY})
    _, _, two = await alarm_hub.get("/v1/alarms", params=[("state", "UNACK"), ("state", "ACKED")])
    _, _, urgent = await alarm_hub.get(
        "/v1/alarms", params=[("priority", "emergency"), ("priority", "medium")]
    )
    _, _, east_only = await alarm_hub.get("/v1/alarms", "east_viewer")

    # `active`: every state but NORM, at the refinery only.
    assert ids(active) == [
        (REFINERY, a.alarm_id) for a in (LEL_HH, LEL_H_2, LEL_H_1, LEL_H_3, STALE, REMOVED)
    ]
    assert {i["state"] for i in two["items"]} == {"UNACK", "ACKED"}
    assert len(two["items"]) == 5  # LEL_HH, EAST_H, LEL_H_2, LEL_H_1, REMOVED
    assert ids(urgent) == [(REFINERY, LEL_HH.alarm_id), (REFINERY, STALE.alarm_id)]
    assert ids(east_only) == [(EAST, EAST_H.alarm_id)]


async def test_pages_follow_the_cursor_without_gaps_or_repeats(alarm_hub: AlarmHub) -> None:
    await insert_points(alarm_hub.hub.pool, POINTS)
    _, _, whole = await alarm_hub.get("/v1/alarms")

    seen: list[tuple[str, str]] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(10):
        status, _, page = await alarm_hub.get("/v1/alarms", params=params)
        assert status == 200
        assert_matches("AlarmPage", page)
        assert len(page["items"]) <= 2
        seen += ids(page)
        if page["next"] is None:
            break
        params = {"limit": "2", "cursor": page["next"]}

    assert seen == ids(whole) and len(seen) == 9


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "ALARM"}, "state"),
        ({"priority": "urgent"}, "priority"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"site": "Not A Site"}, "site"),
        ({"sort": "priority"}, "sort"),
    ],
)
async def test_a_bad_list_parameter_is_a_problem_naming_it(
    alarm_hub: AlarmHub, params: dict[str, str], field: str
) -> None:
    status, content_type, body = await alarm_hub.get("/v1/alarms", params=params)

    assert (status, content_type) == (400, PROBLEM)
    assert_matches("Problem", body)
    assert body["errors"][0]["field"] == field


async def test_who_may_not_read_gets_403(alarm_hub: AlarmHub) -> None:
    role_status, role_type, _ = await alarm_hub.get("/v1/alarms", "gateway")
    site_status, _, site_body = await alarm_hub.get("/v1/alarms", "mipo_viewer", params={"site": REFINERY})

    assert (role_status, role_type) == (403, PROBLEM)
    assert site_status == 403 and site_body["errors"][0]["field"] == "site"


async def test_an_alarm_comes_with_its_transitions_newest_first(alarm_hub: AlarmHub) -> None:
    await insert_points(alarm_hub.hub.pool, POINTS)
    rows = [
        TransitionRow(LEL_H_1, ago(40), "NORM", "UNACK", True, activation=True, observation_ids=("o-1",)),
        TransitionRow(LEL_H_1, ago(35), "UNACK", "ACKED", True, action="ack", actor="kim", reason="seen"),
        TransitionRow(LEL_H_1, ago(30), "ACKED", "NORM", False, returned=True, observation_ids=("o-2",)),
        TransitionRow(
            LEL_H_1, ago(12), "NORM", "UNACK", True, activation=True, observation_ids=("o-3", "o-4")
        ),
        TransitionRow(LEL_H_1, ago(10), "UNACK", "ACKED", True, action="ack", actor="lee"),
        # Another point's, and the other tenant's point with the same id: not this alarm's.
        TransitionRow(LEL_H_2, ago(3), "NORM", "UNACK", True, activation=True),
        TransitionRow(MIPO, ago(1), "NORM", "UNACK", True, activation=True),
    ]
    await insert_transitions(alarm_hub.hub.pool, rows)

    status, _, body = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}", params={"site": REFINERY})

    assert status == 200
    assert_matches("AlarmDetail", body)
    assert body["alarm"]["id"] == LEL_H_1.alarm_id and body["alarm"]["state"] == "ACKED"
    assert body["alarm"]["rationale"]["cause"]["en"].startswith("Combustible gas above 20 %LEL")
    assert [t["id"] for t in body["transitions"]] == [r.id for r in reversed(rows[:5])]
    newest = body["transitions"][0]
    assert (newest["old_state"], newest["new_state"], newest["action"], newest["actor"]) == (
        "UNACK", "ACKED", "ack", "lee",
    )  # fmt: skip
    assert body["transitions"][1]["observation_ids"] == ["o-3", "o-4"]
    assert body["transitions"][1]["activation"] is True
    assert body["next"] is None

    # Three at a time: the cursor leads to the two older ones.
    _, _, first = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}", params={"limit": "3"})
    _, _, rest = await alarm_hub.get(
        f"/v1/alarms/{LEL_H_1.alarm_id}", params={"limit": "3", "cursor": first["next"]}
    )
    assert [t["id"] for t in first["transitions"] + rest["transitions"]] == [r.id for r in reversed(rows[:5])]
    assert rest["next"] is None


async def test_an_alarm_of_another_tenant_or_none_at_all_is_404(alarm_hub: AlarmHub) -> None:
    await insert_points(alarm_hub.hub.pool, POINTS)

    # mipo-petrochem has this id at its own site; its key sees its own, never the refinery's.
    mine = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}", "mipo_viewer")
    theirs = await alarm_hub.get(f"/v1/alarms/{LEL_HH.alarm_id}", "mipo_viewer")
    by_site = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}", "mipo_viewer", params={"site": REFINERY})
    outside_sites = await alarm_hub.get(f"/v1/alarms/{LEL_HH.alarm_id}", "east_viewer")
    unknown = await alarm_hub.get("/v1/alarms/gd-fcc2-299--lel-high")
    odd = await alarm_hub.get("/v1/alarms/no%00such")

    assert mine[0] == 200 and mine[2]["alarm"]["site"] == "mipo-aromatics"
    for status, content_type, body in (theirs, by_site, outside_sites, unknown, odd):
        assert (status, content_type) == (404, PROBLEM)
        assert_matches("Problem", body)
    # The answer names only what was asked: nothing tells a foreign alarm from a missing one.
    assert theirs[2]["detail"] == f"no alarm '{LEL_HH.alarm_id}' that this key may read"


async def test_an_id_at_several_sites_needs_the_site(alarm_hub: AlarmHub) -> None:
    twin = PointRow(REFINING, EAST, "gd-fcc2-201", "lel-high", "high", state="NORM")
    await insert_points(alarm_hub.hub.pool, [LEL_H_1, twin])

    status, _, body = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}")
    named = await alarm_hub.get(f"/v1/alarms/{LEL_H_1.alarm_id}", params={"site": EAST})

    assert status == 400 and body["errors"][0]["field"] == "site"
    assert named[0] == 200 and named[2]["alarm"]["site"] == EAST


async def test_the_kpis_of_a_scripted_day_over_http(alarm_hub: AlarmHub) -> None:
    points, rows = scripted_day()
    await insert_points(alarm_hub.hub.pool, points)
    await insert_transitions(alarm_hub.hub.pool, rows)
    await insert_flood(
        alarm_hub.hub.pool, tenant=REFINING, site=REFINERY, began_at=at(8, 3, 20), ended_at=at(8, 13, 20)
    )
    params = {"site": REFINERY, "from": DAY_START.isoformat(), "to": DAY_END.isoformat()}

    status, content_type, body = await alarm_hub.get("/v1/alarms/kpis", params=params)

    assert (status, content_type) == (200, "application/json")
    assert_matches("AlarmKpis", body)
    assert body["timezone"] == "Asia/Seoul"
    # The figures worked out in test_alarm_kpi_query: 22 activations; peak 11 in 10 minutes.
    assert body["activations"] == 22
    assert body["per_day"] == {
        "average": 22, "peak": 22, "target": {"acceptable": 150, "maximum": 300}, "status": "acceptable",
    }  # fmt: skip
    assert (body["per_10_minutes"]["peak"], body["per_10_minutes"]["peak_status"]) == (11, "over")
    assert body["flood_time_pct"] == {
        "value": 0.694,
        "target": {"acceptable": 1, "maximum": 1},
        "status": "acceptable",
    }
    assert body["top10"][0] == {"alarm_id": "vt-p--vibration-high", "activations": 6, "share_pct": 27.273}
    assert body["top10_share_pct"]["value"] == 77.273
    assert (body["shelved"], body["suppressed"], body["out_of_service"]) == (1, 1, 1)
    assert body["stale"]["value"] == 1
    assert [p["activations"] for p in body["priorities"]] == [6, 11, 4, 1]

    # The same day asked for with a "+" left unescaped (a space): the same window.
    spaced = {**params, "from": "2026-11-22T00:00:00 09:00"}
    assert (await alarm_hub.get("/v1/alarms/kpis", params=spaced))[2]["activations"] == 22


async def test_a_window_past_now_is_measured_to_now(alarm_hub: AlarmHub) -> None:
    # Times from this test's own start: the module's NOW may be minutes old in a long run.
    now = datetime.now(UTC).replace(microsecond=0)
    rise = TransitionRow(LEL_H_2, now - timedelta(minutes=30), "NORM", "UNACK", True, activation=True)
    await insert_points(alarm_hub.hub.pool, [LEL_H_2])
    await insert_transitions(alarm_hub.hub.pool, [rise])
    since = now - timedelta(minutes=60)
    params = {"site": REFINERY, "from": since.isoformat(), "to": (now + timedelta(hours=23)).isoformat()}

    asked = datetime.now(UTC)
    status, _, body = await alarm_hub.get("/v1/alarms/kpis", params=params)
    answered = datetime.now(UTC)

    assert status == 200
    measured_to = datetime.fromisoformat(body["to"])
    # Measured to the moment of the request.
    assert asked - timedelta(seconds=1) <= measured_to <= answered + timedelta(seconds=1)
    # One activation in about an hour: about 24 a day, not 1 (as over the 24 hours asked for).
    assert 20 < body["per_day"]["average"] <= 24


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "site"),
        ({"site": REFINERY, "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"site": REFINERY, "from": "2026-11-22T00:00:00Z"}, "to"),
        ({"site": REFINERY, "from": "2026-11-22", "to": "2026-11-23T00:00:00Z"}, "from"),
        ({"site": REFINERY, "from": "2026-11-22T00:00:00Z", "to": "yesterday"}, "to"),
        ({"site": REFINERY, "from": "2026-11-23T00:00:00Z", "to": "2026-11-22T00:00:00Z"}, "to"),
        ({"site": REFINERY, "from": "2026-11-22T00:00:00Z", "to": "2026-11-22T00:00:00Z"}, "to"),
        ({"site": REFINERY, "from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"site": REFINERY, "from": "2999-01-01T00:00:00Z", "to": "2999-01-02T00:00:00Z"}, "from"),
        ({"site": REFINERY, "from": "0001-01-01T00:00:00+23:59", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"site": REFINERY, "from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z", "x": "1"}, "x"),
    ],
)
async def test_bad_kpi_parameters_are_a_problem_naming_them(
    alarm_hub: AlarmHub, params: dict[str, str], field: str
) -> None:
    status, content_type, body = await alarm_hub.get("/v1/alarms/kpis", params=params)

    assert (status, content_type) == (400, PROBLEM)
    assert_matches("Problem", body)
    assert body["errors"][0]["field"] == field


async def test_the_kpis_of_another_tenants_site_are_refused(alarm_hub: AlarmHub) -> None:
    params = {"site": REFINERY, "from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z"}

    status, content_type, body = await alarm_hub.get("/v1/alarms/kpis", "mipo_viewer", params=params)
    gateway = await alarm_hub.get("/v1/alarms/kpis", "gateway", params=params)

    assert (status, content_type) == (403, PROBLEM) and body["errors"][0]["field"] == "site"
    assert gateway[0] == 403
