"""Photos of an incident through a real hub: a responder attaches a JPEG and a PNG made here, the
photo comes back as sent, the change is on the timeline and on INCIDENTS; what is not a photo,
too large, stale or someone else's is refused as documented."""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import nats
from PIL import Image

from services.common.auth.keys import create_key
from services.common.contracts import IncidentChange
from tests.conftest import RunningHub, eventually
from tests.openapi import assert_matches

TENANT, OTHER = "ulsan-refining", "mipo-petrochem"


def photo(fmt: str, size: tuple[int, int] = (320, 240), seed: int = 0) -> bytes:
    image = Image.new("RGB", size, (180, 120 + seed % 100, 40))
    image.paste((30, 30, 30), (40, 40, 120 + seed % 50, 160))  # a valve, say
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def too_large_photo() -> io.BytesIO:
    noise = Image.frombytes("RGB", (2000, 2000), random.Random(9).randbytes(2000 * 2000 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    assert len(out.getvalue()) > 10 * 1024 * 1024
    out.seek(0)
    return out


async def an_incident(hub: RunningHub) -> str:
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
        return await hub.hub.pool.fetchval(
            "SELECT id FROM incidents WHERE tenant = $1 AND type = 'gas_release'", TENANT
        )

    return await eventually(opened, what="the gas release")


async def current_tag(hub: RunningHub, incident: str, key: str) -> str:
    async with hub.session.get(
        f"{hub.url}/v1/incidents/{incident}", headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status == 200
        return response.headers["ETag"]


async def send(
    hub: RunningHub,
    path: str,
    key: str,
    data: bytes | io.BytesIO | aiohttp.FormData,
    **headers: str,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with hub.session.post(
        hub.url + path, data=data, headers={"Authorization": f"Bearer {key}", **headers}
    ) as response:
        return response.status, await response.json(content_type=None), response


async def attached_on_the_stream(nats_url: str, incident: str) -> IncidentChange:
    """The `attached` change of the incident, as INCIDENTS carries it (relayed from the outbox)."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(f"incident.{TENANT}.*.{incident}", ordered_consumer=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            change = IncidentChange.FromString(msg.data)
            if change.entry.change == "attached":
                assert msg.headers is not None
                assert msg.headers["ce-type"] == "org.safetyhub.incident.attached.v1"
                return change
        raise AssertionError("no attached change on INCIDENTS")
    finally:
        await nc.close()


async def attach(
    hub: RunningHub, path: str, key: str, data: bytes | Callable[[], aiohttp.FormData], **headers: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send as a phone app would: on 412 (fusion changed the incident meanwhile: an alarm joined)
    read the current ETag from the answer and send again."""
    for _ in range(5):
        status, body, response = await send(
            hub, path, key, data if isinstance(data, bytes) else data(), **headers
        )
        if status != 412:
            return status, body, response
        headers = {**headers, "If-Match": response.headers["ETag"]}
    return status, body, response


async def test_a_responder_attaches_photos_and_those_allowed_see_them(
    running_hub: RunningHub, nats_url: str
) -> None:
    hub = running_hub
    pool = hub.hub.pool
    incident = await an_incident(hub)
    responder = await create_key(pool, tenant=TENANT, role="responder")
    path = f"/v1/incidents/{incident}/attachments"
    jpeg = photo("JPEG")
    tag = await current_tag(hub, incident, responder)

    status, body, response = await attach(
        hub, path, responder, jpeg, **{"Content-Type": "image/jpeg", "If-Match": tag}
    )
    assert status == 201, body
    assert_matches("IncidentAttachment", body)
    assert (body["contentType"], body["width"], body["height"]) == ("image/jpeg", 320, 240)
    assert body["size"] == len(jpeg)
    assert response.headers["Location"] == body["href"] == f"{path}/{body['id']}"
    assert response.headers["ETag"] != tag
    first = body

    # The photo comes back byte for byte with its type, to a viewer of the tenant too.
    async with hub.session.get(hub.url + first["href"], headers=hub.auth("viewer")) as got:
        assert got.status == 200
        assert got.headers["Content-Type"] == "image/jpeg"
        assert await got.read() == jpeg

    # A PNG from a phone's form upload, with a note; sent with the incident's new version.
    def form() -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("file", photo("PNG", (200, 100)), filename="valve.png", content_type="image/png")
        form.add_field("note", "the flange, from the east side")
        return form

    status, body, response = await attach(
        hub, path, responder, form, **{"If-Match": response.headers["ETag"]}
    )
    assert status == 201, body
    assert (body["contentType"], body["filename"], body["width"]) == ("image/png", "valve.png", 200)
    async with hub.session.get(hub.url + body["href"], headers=hub.auth("viewer")) as got:
        assert got.status == 200 and got.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(await got.read())).size == (200, 100)

    # The incident lists both; each is a timeline entry; the change went out on INCIDENTS.
    async with hub.session.get(f"{hub.url}/v1/incidents/{incident}", headers=hub.auth("viewer")) as got:
        detail = await got.json()
    assert_matches("IncidentDetail", detail)
    assert [a["id"] for a in detail["attachments"]] == [first["id"], body["id"]]
    attached = [e for e in detail["timeline"] if e["change"] == "attached"]
    assert len(attached) == 2 and attached[1]["note"] == "the flange, from the east side"
    change = await attached_on_the_stream(nats_url, incident)
    assert change.incident_id == incident and first["id"] in change.entry.what

    # The same photo again (a retry whose answer was lost, with the old ETag): the one there, no
    # second attachment, no second entry.
    stale = {"Content-Type": "image/jpeg", "If-Match": tag}
    status, again, _ = await send(hub, path, responder, jpeg, **stale)
    assert status == 200 and again["id"] == first["id"]
    stored = "SELECT count(*) FROM incident_attachments WHERE incident_id = $1"
    assert await pool.fetchval(stored, incident) == 2
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM incident_timeline WHERE incident_id = $1 AND change = 'attached'", incident
        )
        == 2
    )


async def test_what_is_not_a_photo_too_large_stale_or_not_yours_is_refused(running_hub: RunningHub) -> None:
    hub = running_hub
    pool = hub.hub.pool
    incident = await an_incident(hub)
    responder = await create_key(pool, tenant=TENANT, role="responder")
    mipo = await create_key(pool, tenant=OTHER, role="admin")
    east_only = await create_key(pool, tenant=TENANT, role="responder", sites=["ulsan-refinery-east"])
    path = f"/v1/incidents/{incident}/attachments"
    tag = await current_tag(hub, incident, responder)
    jpeg = {"Content-Type": "image/jpeg", "If-Match": tag}

    async def refused(
        data: bytes | aiohttp.FormData, key: str = responder, **headers: str
    ) -> tuple[int, Any]:
        status, problem, response = await send(hub, path, key, data, **headers)
        if status >= 400:
            assert response.content_type == "application/problem+json", problem
        return status, problem

    # Not a JPEG or PNG by content, whatever the Content-Type says.
    assert (await refused(photo("GIF"), **jpeg))[0] == 415
    assert (await refused(b"%PDF-1.7 not a photo", **jpeg))[0] == 415
    assert (await refused(photo("PNG"), **jpeg))[0] == 415  # declared JPEG, holds a PNG
    assert (await refused(photo("JPEG"), **{"Content-Type": "text/plain", "If-Match": tag}))[0] == 415
    form = aiohttp.FormData()
    form.add_field("file", photo("BMP"), filename="x.jpg", content_type="image/jpeg")
    assert (await refused(form, **{"If-Match": tag}))[0] == 415
    # Larger than 10 MB: a real PNG of noise (noise does not compress), past the limit.
    out = too_large_photo()
    big = {"Content-Type": "image/png", "If-Match": tag}
    status, problem, _ = await send(hub, path, responder, out, **big)
    assert status == 413, problem
    # No If-Match: 428; a stale one: 412 with the current version.
    assert (await refused(photo("JPEG"), **{"Content-Type": "image/jpeg"}))[0] == 428
    status, problem = await refused(photo("JPEG"), **{"Content-Type": "image/jpeg", "If-Match": '"999"'})
    assert status == 412 and problem["incidentStatus"] == "open"
    # A viewer may look, not attach; another tenant's or another site's incident does not exist.
    assert (await refused(photo("JPEG"), hub.keys["viewer"], **jpeg))[0] == 403
    assert (await refused(photo("JPEG"), mipo, **jpeg))[0] == 404
    assert (await refused(photo("JPEG"), east_only, **jpeg))[0] == 404
    # A form without its file names the field.
    form = aiohttp.FormData()
    form.add_field("picture", photo("JPEG"), filename="a.jpg", content_type="image/jpeg")
    status, problem = await refused(form, **{"If-Match": tag})
    assert status == 422 and problem["errors"][0]["field"] == "picture"
    # A plain form (no multipart) is no photo.
    status, problem = await refused(aiohttp.FormData({"file": "x"}), **{"If-Match": tag})
    assert status == 415, problem
    assert await pool.fetchval("SELECT count(*) FROM incident_attachments") == 0

    status, body, _ = await attach(hub, path, responder, photo("JPEG"), **jpeg)
    assert status == 201, body
    for key in (mipo, east_only):
        async with hub.session.get(hub.url + body["href"], headers={"Authorization": f"Bearer {key}"}) as got:
            assert got.status == 404
            assert "image" not in got.content_type
    unknown = hub.url + path + "/01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A"
    async with hub.session.get(unknown, headers=hub.auth("viewer")) as got:
        assert got.status == 404
    async with hub.session.get(hub.url + body["href"], headers=hub.auth("gateway")) as got:
        assert got.status == 403
