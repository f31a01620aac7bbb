"""Who may do what to an incident: tenants x roles x every incident endpoint, through a real hub.

One gas release of the refining tenant; keys of every role in that tenant and in another. A stale
If-Match (`"-1"`) on every change means a caller allowed past authorization and scoping gets 412,
so the matrix tells "forbidden" (403), "does not exist for you" (404) and "allowed" (412) apart
without changing the incident. No answer to the other tenant says anything of the incident.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

from PIL import Image

from services.common.auth.keys import create_key
from services.common.auth.principal import ROLES
from services.common.contracts.ids import new_id
from tests.conftest import RunningHub, eventually

OWNER, OTHER = "ulsan-refining", "mipo-petrochem"
# Each action with a body it accepts, so only authorization, scoping and the version decide.
ACTIONS = {
    "ack": {},
    "assign": {"assignee": "team-b"},
    "dispatch": {},
    "resolve": {"code": "other"},
    "close": {},
    "reopen": {"note": "the gas came back"},
    "comments": {"note": "wind from the east"},
}
PHOTO_BUFFER = io.BytesIO()
Image.new("RGB", (8, 8), (200, 0, 0)).save(PHOTO_BUFFER, format="JPEG")
PHOTO = PHOTO_BUFFER.getvalue()
READERS = {"viewer", "responder", "operator", "admin"}
WORKERS = {"responder", "operator", "admin"}
ASSIGNERS = {"operator", "admin"}


def may(role: str, action: str) -> bool:
    return role in (ASSIGNERS if action == "assign" else WORKERS)


async def test_every_endpoint_for_every_role_of_both_tenants(running_hub: RunningHub) -> None:
    moment = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    reading = {
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": 30.0,
        "time": moment,
        "id": uuid.uuid4().hex,
    }
    async with running_hub.session.post(
        running_hub.url + "/v1/observations", json=[reading], headers=running_hub.auth("gateway")
    ) as response:
        assert response.status == 202
    pool = running_hub.hub.pool

    async def opened() -> str | None:
        return await pool.fetchval(
            "SELECT id FROM incidents WHERE tenant = $1 AND type = 'gas_release'", OWNER
        )

    incident = await eventually(opened, what="the gas release")
    keys = {
        (tenant, role): await create_key(pool, tenant=tenant, role=role)
        for tenant in (OWNER, OTHER)
        for role in ROLES
    }

    photo_id = new_id()
    await pool.execute(
        "INSERT INTO incident_attachments (tenant, id, incident_id, content_type, size, width, height,"
        " sha256, added_by, added_at, data) VALUES ($1, $2, $3, 'image/jpeg', $4, 8, 8, 'x', 'k', now(), $5)",
        OWNER,
        photo_id,
        incident,
        len(PHOTO),
        PHOTO,
    )
    checked = 0
    for (tenant, role), key in keys.items():
        auth = {"Authorization": f"Bearer {key}"}
        own = tenant == OWNER
        async with running_hub.session.get(running_hub.url + "/v1/incidents", headers=auth) as response:
            text = await response.text()
            assert response.status == (200 if role in READERS else 403), (tenant, role, text)
            assert (incident in text) == (own and role in READERS), (tenant, role)
        async with running_hub.session.get(
            f"{running_hub.url}/v1/incidents/{incident}", headers=auth
        ) as response:
            text = await response.text()
            expected = 403 if role not in READERS else 200 if own else 404
            assert response.status == expected, (tenant, role, text)
            if response.status != 200:
                assert "gas_release" not in text and "cdu-1" not in text, (tenant, role)
        for action, body in ACTIONS.items():
            url = f"{running_hub.url}/v1/incidents/{incident}/{action}"
            async with running_hub.session.post(
                url, json=body, headers={**auth, "If-Match": '"-1"'}
            ) as response:
                text = await response.text()
                expected = 403 if not may(role, action) else 412 if own else 404
                assert response.status == expected, (tenant, role, action, text)
                if not own:
                    assert response.headers.get("ETag") is None, "another tenant learns no version"
                    assert "gas_release" not in text and "cdu-1" not in text, (tenant, role, action)
            checked += 1
        # A photo: a real JPEG, so only authorization, scoping and the version decide.
        async with running_hub.session.post(
            f"{running_hub.url}/v1/incidents/{incident}/attachments",
            data=PHOTO,
            headers={**auth, "If-Match": '"-1"', "Content-Type": "image/jpeg"},
        ) as response:
            text = await response.text()
            expected = 403 if role not in WORKERS else 412 if own else 404
            assert response.status == expected, (tenant, role, "attachments", text)
            if not own:
                assert response.headers.get("ETag") is None, "another tenant learns no version"
        async with running_hub.session.get(
            f"{running_hub.url}/v1/incidents/{incident}/attachments/{photo_id}", headers=auth
        ) as response:
            expected = 403 if role not in READERS else 200 if own else 404
            assert response.status == expected, (tenant, role, "photo")
            assert (await response.read() == PHOTO) == (expected == 200)
    assert checked == len(ROLES) * 2 * len(ACTIONS)
    # Nothing changed: every change was refused.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM incident_timeline WHERE incident_id = $1 AND actor <> 'system'", incident
        )
        == 0
    )
