"""POST /v1/observations and GET /v1/observations against a hub on real NATS and PostgreSQL."""

from __future__ import annotations

import base64
import io
from datetime import timedelta, timezone
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
import structlog
from yarl import URL

from tests.builders import RECENT, reading
from tests.conftest import RunningHub, eventually

pytestmark = pytest.mark.integration

SITE = "ulsan-refinery"
PROBLEM = "application/problem+json"
BASE = RECENT
KST = timezone(timedelta(hours=9))



async def post(
    hub: RunningHub,
    body: Any,
    *,
    key: str = "gateway",
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = raw if raw is not None else msgspec.json.encode(body)
    headers = {**hub.auth(key), "Content-Type": content_type} if key else {"Content-Type": content_type}
    # A file-like body: aiohttp warns (an error here) when large raw bytes are sent in one write.
    async with hub.session.post(hub.url + "/v1/observations", data=io.BytesIO(data), headers=headers) as resp:
        payload = msgspec.json.decode(await resp.read()) if resp.content_length != 0 else {}
        return resp.status, payload, dict(resp.headers)


async def get(hub: RunningHub, key: str = "viewer", **params: str) -> tuple[int, dict[str, Any]]:
    async with hub.session.get(hub.url + "/v1/observations", params=params, headers=hub.auth(key)) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def stored_count(hub: RunningHub) -> int:
    count: int = await hub.hub.pool.fetchval("SELECT count(*) FROM observations")
    return count


async def test_a_posted_batch_is_stored_and_queryable(running_hub: RunningHub) -> None:
    batch = [reading(n, id=f"batch-{n}") for n in range(3)]
    status, body, _ = await post(running_hub, batch)
    assert status == 202
    assert body == {"accepted": ["batch-0", "batch-1", "batch-2"], "rejected": []}

    async def all_three() -> dict[str, Any] | None:
        _, page = await get(running_hub, site=SITE)
        return page if len(page["items"]) == 3 else None

    page = await eventually(all_three, what="three observations in the store")
    newest = page["items"][0]
    assert newest["id"] == "batch-2"  # newest first
    assert newest["value"] == 3.5 and newest["unit"] == "ppm" and newest["quality"] == "good"
    assert newest["tenant"] == "ulsan-refining" and newest["device"] == "gd-cdu1-101"


async def test_the_same_id_twice_is_stored_once(running_hub: RunningHub) -> None:
    item = reading(0, id="dup-1")
    for _ in range(2):
        status, body, _ = await post(running_hub, [item])
        assert status == 202 and body["accepted"] == ["dup-1"]
    # A retried post without ids derives the same ids, so it is deduplicated too.
    anonymous = [reading(5), reading(6)]
    first = await post(running_hub, anonymous)
    second = await post(running_hub, anonymous)
    assert first[1]["accepted"] == second[1]["accepted"]

    await eventually(lambda: _count_is(running_hub, 3), what="three distinct rows")
    rows = await running_hub.hub.pool.fetch("SELECT id FROM observations WHERE id = 'dup-1'")
    assert len(rows) == 1


async def test_overlapping_batches_store_each_observation_once(running_hub: RunningHub) -> None:
    # Two gateways (or one retrying with a different cut) send batches that share readings: the
    # bus messages differ, so JetStream keeps both; the store still keeps each observation once.
    first = [reading(n, id=f"ov-{n}") for n in (0, 1, 2)]
    second = [reading(n, id=f"ov-{n}") for n in (1, 2, 3)]
    for batch in (first, second, first):
        status, _, _ = await post(running_hub, batch)
        assert status == 202

    await eventually(lambda: _count_is(running_hub, 4), what="four distinct rows")
    ids = await running_hub.hub.pool.fetch("SELECT id FROM observations ORDER BY id")
    assert [r["id"] for r in ids] == ["ov-0", "ov-1", "ov-2", "ov-3"]


async def _store_settled(nats_url: str) -> bool:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info("OBSERVATIONS", "store")
    finally:
        await nc.close()
    return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0


async def test_an_id_repeated_within_one_post_is_stored_once(running_hub: RunningHub, nats_url: str) -> None:
    # The same id at the same time is the same observation, whatever else the copy says.
    batch = [reading(0, id="twice"), reading(0, id="twice", device="gd-cdu1-102"), reading(2, id="once")]

    status, body, _ = await post(running_hub, batch)

    assert status == 202 and body["accepted"] == ["twice", "twice", "once"]
    await eventually(lambda: _store_settled(nats_url), what="the store consumer has acked everything")
    rows = await running_hub.hub.pool.fetch("SELECT id, device FROM observations ORDER BY id")
    assert [(r["id"], r["device"]) for r in rows] == [("once", "gd-cdu1-101"), ("twice", "gd-cdu1-101")]


async def test_a_post_travels_as_one_message_per_device(running_hub: RunningHub, nats_url: str) -> None:
    # A multi-gas detector sends LEL and H2S together; three detectors, two readings each, twice.
    points = [
        (device, kind, unit)
        for device in ("gd-cdu1-101", "gd-cdu1-102", "gd-cdu1-103")
        for kind, unit in (("gas.lel", "%LEL"), ("gas.h2s" if device != "gd-cdu1-103" else "gas.co", "ppm"))
    ]
    batch = [
        reading(n, id=f"dev-{n}", device=device, kind=kind, unit=unit)
        for n, (device, kind, unit) in enumerate(points * 2)
    ]

    status, body, _ = await post(running_hub, batch)

    assert status == 202
    assert body["accepted"] == [f"dev-{n}" for n in range(12)]  # in posted order
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info("OBSERVATIONS", subjects_filter="obs.>")
    finally:
        await nc.close()
    assert info.state.messages == 3
    assert info.state.subjects == {
        f"obs.ulsan-refining.{SITE}.{device}": 1 for device in ("gd-cdu1-101", "gd-cdu1-102", "gd-cdu1-103")
    }
    await eventually(lambda: _count_is(running_hub, 12), what="twelve rows")


async def test_readings_larger_than_one_bus_message_are_split_and_all_stored(
    running_hub: RunningHub, nats_url: str
) -> None:
    # 200 readings of one device with the most attributes allowed: over 1.5 MB, while the server
    # takes at most 1 MB per message.
    attributes = {f"tag-{k:02d}": "x" * 256 for k in range(32)}
    batch = [reading(n, id=f"big-{n}", attributes=attributes) for n in range(200)]

    status, body, _ = await post(running_hub, batch)

    assert status == 202 and len(body["accepted"]) == 200
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info("OBSERVATIONS")
    finally:
        await nc.close()
    assert info.state.bytes > 1024 * 1024  # could not have been one message
    assert info.state.messages >= 2
    await eventually(lambda: _count_is(running_hub, 200), what="two hundred rows")


async def _count_is(hub: RunningHub, expected: int) -> bool:
    return await stored_count(hub) == expected


async def test_ndjson_is_accepted(running_hub: RunningHub) -> None:
    lines = b"\n".join(msgspec.json.encode(reading(n, id=f"nd-{n}")) for n in range(4)) + b"\n"
    status, body, _ = await post(running_hub, None, raw=lines, content_type="application/x-ndjson")
    assert status == 202
    assert body["accepted"] == ["nd-0", "nd-1", "nd-2", "nd-3"]


async def test_malformed_json_is_400_problem(running_hub: RunningHub) -> None:
    status, body, headers = await post(running_hub, None, raw=b'[{"site": "ulsan-refinery",')
    assert status == 400
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["status"] == 400 and body["title"] == "Malformed body" and "malformed JSON" in body["detail"]


async def test_wrong_content_type_is_415(running_hub: RunningHub) -> None:
    status, body, headers = await post(
        running_hub, None, raw=b"site=x", content_type="application/x-www-form-urlencoded"
    )
    assert status == 415
    assert headers["Content-Type"].startswith(PROBLEM)
    assert "application/json" in body["detail"]


async def test_too_many_items_is_413(running_hub: RunningHub) -> None:
    limit = running_hub.hub.config.ingest.max_items
    status, body, _ = await post(running_hub, [reading(0)] * (limit + 1))
    assert status == 413
    assert str(limit) in body["detail"]
    assert await stored_count(running_hub) == 0


async def test_a_body_over_the_size_limit_is_413(running_hub: RunningHub) -> None:
    limit = running_hub.hub.config.ingest.max_body_mb * 1024 * 1024
    status, body, headers = await post(running_hub, None, raw=b"[" + b" " * limit + b"]")
    assert status == 413
    assert headers["Content-Type"].startswith(PROBLEM)
    assert str(limit) in body["detail"]


async def test_invalid_items_are_422_naming_index_and_field(running_hub: RunningHub) -> None:
    status, body, headers = await post(
        running_hub, [reading(0, value="high"), reading(1, device="gd-nope-999")]
    )
    assert status == 422
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["errors"] == [
        {"index": 0, "field": "value", "detail": "value must be a number (got a string)"},
        {
            "index": 1,
            "field": "device",
            "detail": "device 'gd-nope-999' is not registered at site 'ulsan-refinery'",
        },
    ]
    assert await stored_count(running_hub) == 0


async def test_a_mixed_batch_accepts_the_valid_items_and_lists_the_rest(running_hub: RunningHub) -> None:
    too_old = (BASE - timedelta(days=31)).isoformat()  # the hub keeps 30 days by default
    batch = [
        reading(0, id="ok-0"),
        reading(1, id="bad-1", unit="ppb"),
        reading(2, id="ok-2", unexpected=1),
        reading(3, id="old-3", time=too_old),
    ]
    status, body, _ = await post(running_hub, batch)
    assert status == 202
    assert body["accepted"] == ["ok-0"]
    assert [(e["index"], e["field"]) for e in body["rejected"]] == [
        (1, "unit"),
        (2, "unexpected"),
        (3, "time"),
    ]
    assert "30 days" in body["rejected"][2]["detail"]
    await eventually(lambda: _count_is(running_hub, 1), what="the one valid row")


async def test_a_missing_or_unknown_key_is_401(running_hub: RunningHub) -> None:
    status, body, headers = await post(running_hub, [reading(0)], key="")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    running_hub.keys["forged"] = "shk_000000000000_not-a-real-secret"
    status, body, _ = await post(running_hub, [reading(0)], key="forged")
    assert status == 401 and "unknown or revoked" in body["detail"]


async def test_a_gateway_key_for_site_a_is_refused_for_site_b(running_hub: RunningHub) -> None:
    other_site = reading(0, site="ulsan-refinery-east", device="gd-hcr1-101")
    status, body, _ = await post(running_hub, [reading(1), other_site], key="gateway_cdu_only")
    assert status == 403
    assert body["errors"] == [{"index": 1, "field": "site", "detail": body["detail"]}]
    assert "ulsan-refinery" in body["detail"]
    # Another tenant's site is refused, and nothing of the request is accepted.
    status, body, _ = await post(running_hub, [reading(0)], key="mipo_gateway")
    assert status == 403 and body["detail"] == f"this key may not post for site '{SITE}'"
    # The unrestricted key of the tenant may post for both.
    status, _, _ = await post(running_hub, [reading(1), other_site], key="gateway")
    assert status == 202
    await eventually(lambda: _count_is(running_hub, 2), what="rows of the permitted post only")


async def test_a_detectors_own_key_is_refused_for_another_detector(running_hub: RunningHub) -> None:
    status, _, _ = await post(running_hub, [reading(0)], key="detector_101")
    assert status == 202

    status, body, _ = await post(
        running_hub, [reading(1), reading(2, device="gd-cdu1-102")], key="detector_101"
    )

    assert status == 403
    assert body["errors"] == [
        {"index": 1, "field": "device", "detail": "this key may post only for devices ['gd-cdu1-101']"}
    ]


async def test_roles_separate_posting_from_reading(running_hub: RunningHub) -> None:
    status, body, _ = await post(running_hub, [reading(0)], key="viewer")
    assert status == 403 and "viewer" in body["detail"]
    status, body = await get(running_hub, key="gateway")
    assert status == 403


async def test_query_filters_pages_and_tenant_scope(running_hub: RunningHub) -> None:
    batch = [reading(n, id=f"q-{n}") for n in range(5)]
    batch.append(reading(9, id="q-lel", kind="gas.lel", unit="%LEL", value=4.0))
    assert (await post(running_hub, batch))[0] == 202
    await eventually(lambda: _count_is(running_hub, 6), what="six rows")

    status, page = await get(running_hub, site=SITE, kind="gas.h2s", limit="2")
    assert status == 200 and [i["id"] for i in page["items"]] == ["q-4", "q-3"]
    seen = [i["id"] for i in page["items"]]
    while page["next"]:
        _, page = await get(running_hub, site=SITE, kind="gas.h2s", limit="2", cursor=page["next"])
        seen += [i["id"] for i in page["items"]]
    assert seen == ["q-4", "q-3", "q-2", "q-1", "q-0"]

    since = (BASE + timedelta(seconds=2)).isoformat()
    _, page = await get(running_hub, site=SITE, kind="gas.h2s", since=since)
    assert [i["id"] for i in page["items"]] == ["q-4", "q-3", "q-2"]
    # The same instant written in Korean time with an unescaped "+", as people type it.
    korean = (BASE + timedelta(seconds=2)).astimezone(KST).isoformat()
    typed = URL(f"{running_hub.url}/v1/observations?site={SITE}&kind=gas.h2s&since={korean}", encoded=True)
    async with running_hub.session.get(typed, headers=running_hub.auth("viewer")) as resp:
        assert resp.status == 200
        assert [i["id"] for i in msgspec.json.decode(await resp.read())["items"]] == ["q-4", "q-3", "q-2"]

    # Another tenant's viewer sees none of it, and may not name the site.
    _, page = await get(running_hub, key="mipo_viewer")
    assert page["items"] == []
    status, _ = await get(running_hub, key="mipo_viewer", site=SITE)
    assert status == 403


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "@@@"}, "cursor"),
        ({"colour": "red"}, "colour"),
        # Each of these once reached PostgreSQL or a time conversion and answered 500.
        ({"device": "\x00"}, "device"),
        ({"kind": "gas\x00h2s"}, "kind"),
        ({"site": "\x00"}, "site"),
        ({"since": "0001-01-01T00:00:00+23:59"}, "since"),
        ({"until": "9999-12-31T23:59:59-23:59"}, "until"),
        ({"cursor": _cursor('["0001-01-01T00:30:00+01:00", "01JD8Z0000000000000000000A"]')}, "cursor"),
        ({"cursor": _cursor('["2026-11-22T00:00:00+00:00", "01JD\\u0000"]')}, "cursor"),
        # Not RFC 3339, and not ASCII digits: refused rather than guessed.
        ({"since": "20261122T000000Z"}, "since"),
        ({"until": "2026-11-22"}, "until"),
        ({"limit": "\u0665"}, "limit"),
        ({"limit": " 5"}, "limit"),
    ],
)
async def test_bad_query_parameters_are_400_naming_the_field(
    running_hub: RunningHub, params: dict[str, str], field: str
) -> None:
    status, body = await get(running_hub, **params)
    assert status == 400, body
    assert body["errors"][0]["field"] == field
    assert body["detail"].startswith(f"{field}: ")


async def test_health_readiness_and_metrics(running_hub: RunningHub) -> None:
    async with running_hub.session.get(running_hub.url + "/healthz") as resp:
        assert resp.status == 200
    async with running_hub.session.get(running_hub.url + "/readyz") as resp:
        assert resp.status == 200
        checks = {
            "nats": "ok",
            "postgres": "ok",
            "alarms.alarm_rules": "ok",
            "alarms.alarm_consumer": "ok",
            "incidents.incident_rules": "ok",
            "incidents.incident_consumer": "ok",
            "incidents.incident_live_stream": "ok",
            "escalation.escalation_consumer": "ok",
            "escalation.delivery_engine": "ok",
            "escalation.escalation_timer": "ok",
            "feed.feed_consumer": "ok",
        }
        assert (await resp.json())["checks"] == checks
    await post(running_hub, [reading(0, id="m-1")])
    async with running_hub.session.get(running_hub.url + "/metrics") as resp:
        text = await resp.text()
    assert "safetyhub_ingest_accepted_total" in text
    assert "safetyhub_store_stored_total" in text


async def test_the_stored_row_keeps_detection_details(running_hub: RunningHub, database_url: str) -> None:
    detection = {
        "id": "det-1",
        "site": SITE,
        "device": "cam-tf-501",
        "kind": "video.smoke",
        "confidence": 0.87,
        "box": {"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.25},
        "snapshot": "s3://snapshots/cam-tf-501/det-1.jpg",
        "position": {"latitude": 35.4731, "longitude": 129.3512},
        "attributes": {"model": "smoke-v2"},
    }
    status, body, _ = await post(running_hub, [detection])
    assert status == 202, body

    async def stored() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await running_hub.hub.pool.fetchrow(
            "SELECT * FROM observations WHERE id = 'det-1'"
        )
        return row

    await eventually(stored, what="the detection row")
    _, page = await get(running_hub, site=SITE, device="cam-tf-501")
    item = page["items"][0]
    assert item["confidence"] == pytest.approx(0.87)
    assert item["box"] == {
        "x": pytest.approx(0.1),
        "y": pytest.approx(0.2),
        "width": pytest.approx(0.3),
        "height": pytest.approx(0.25),
    }
    assert item["snapshot"] == detection["snapshot"]
    assert item["position"] == detection["position"]
    assert item["attributes"] == {"model": "smoke-v2"}


async def test_the_documented_order_media_type_before_role(running_hub: RunningHub) -> None:
    # A viewer may not post, but a text/plain body is refused for its type first (415), as the
    # documented order of checks says; with a JSON body the role is refused (403).
    status, body, _ = await post(running_hub, None, raw=b"hello", key="viewer", content_type="text/plain")
    assert status == 415
    status, body, _ = await post(running_hub, [reading(0)], key="viewer")
    assert status == 403 and "viewer" in body["detail"]


async def test_odd_bodies_are_named_not_crashed_on(running_hub: RunningHub) -> None:
    status, body, _ = await post(running_hub, None, raw=b"[" * 1000 + b"]" * 1000)
    assert status == 400 and "nested too deeply" in body["detail"]

    single = b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1e400}'
    status, body, _ = await post(running_hub, None, raw=single)
    assert status == 422
    assert body["errors"][0]["field"] == "value" and body["detail"].startswith("value must be a number")

    status, body, _ = await post(running_hub, [])
    assert status == 422 and "carries no observation" in body["detail"]


async def test_refused_requests_are_logged_with_key_reason_and_counts(running_hub: RunningHub) -> None:
    key_id = running_hub.keys["gateway"].split("_")[1]
    running_hub.keys["forged"] = "shk_000000000000_not-a-real-secret"
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):  # the same refusal again within the interval is counted, not logged
            status, _, _ = await post(running_hub, [reading(0, device="gd-nope-999"), reading(1, value="x")])
            assert status == 422
        status, _, _ = await post(running_hub, [reading(2, id="fine"), reading(3, unit="ppb")])
        assert status == 202
        status, _, _ = await post(running_hub, [reading(0)], key="forged")
        assert status == 401
    refused = [e for e in logs if e["event"] == "request_refused" and e["who"] == f"key:{key_id}"]
    assert len(refused) == 1
    assert refused[0]["reason"] == "invalid-observations"
    assert refused[0]["status"] == 422 and refused[0]["errors"] == 2 and refused[0]["items"] == 2
    partial = [e for e in logs if e["event"] == "observations_rejected"]
    assert partial and partial[0]["who"] == f"key:{key_id}"
    assert partial[0]["items"] == 2 and partial[0]["rejected"] == 1 and partial[0]["reason"] == "unit"
    unknown = [e for e in logs if e["event"] == "request_refused" and e["reason"] == "unauthorized"]
    # The presented key id is logged, never its secret.
    assert unknown and unknown[0]["who"] == "key:000000000000"
    assert all("not-a-real-secret" not in str(e) for e in logs)
