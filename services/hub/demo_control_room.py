"""The demo's control room: a webhook receiver the demo runs itself, an endpoint of the first
tenant pointing at it, and an escalation policy for gas releases, so a newcomer sees incidents
notified (signed, verified here) and escalated until the simulated responder acknowledges.

What it receives goes to the log (`control_room_received`: type, incident, webhook-id), which the
live view's log file or, without the live view, the terminal shows. The endpoint and the policy
are made through the hub's own API with an admin key and kept across runs (their ids and the
endpoint's secret in the demo's keys file); a later run points the endpoint at its new receiver.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.logging import get_logger

log = get_logger(__name__)
ENDPOINT_NAME = "Demo control room"
POLICY_NAME = "Demo gas release escalation"
# Paged again every 3 s, twice, until someone acknowledges: the demo's responder acknowledges
# about 8 s after the opening, so a newcomer sees the escalation happen before it stops.
STEP_WAIT_S = 3
STEP_REPEAT = 2


class _Event(msgspec.Struct):
    type: str = ""
    subject: str = ""


class ControlRoom:
    """The receiver: verifies each delivery's signature and logs it."""

    def __init__(self) -> None:
        self.secret = ""
        self.received = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(self.secret).verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError as err:
            log.warning("control_room_unverified", error=str(err))
            return web.Response(status=401)
        self.received += 1
        fields: dict[str, Any] = {"webhook_id": request.headers.get("webhook-id", "")}
        with contextlib.suppress(msgspec.DecodeError):
            event = msgspec.json.decode(body, type=_Event)
            fields |= {"type": event.type, "incident_id": event.subject}
        log.info("control_room_received", **fields)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def control_room(http_url: str, admin_key: str, stored: dict[str, str]) -> AsyncIterator[ControlRoom]:
    """The receiver running, and the endpoint and policy in place (`stored` updated with them)."""
    room = ControlRoom()
    app = web.Application()
    app.router.add_post("/", room.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(
            base_url=http_url, headers={"Authorization": f"Bearer {admin_key}"}
        ) as session:
            room.secret = await _endpoint(session, f"http://127.0.0.1:{port}/", stored)
            await _policy(session, stored)
        log.info("control_room_ready", url=f"http://127.0.0.1:{port}/", endpoint=stored["endpoint"])
        yield room
    finally:
        await runner.cleanup()


async def _endpoint(session: aiohttp.ClientSession, url: str, stored: dict[str, str]) -> str:
    known = stored.get("endpoint")
    if known and stored.get("endpoint_secret"):
        async with session.patch(f"/v1/endpoints/{known}", json={"url": url, "enabled": True}) as answer:
            if answer.status == 200:
                return stored["endpoint_secret"]
    async with session.post(
        "/v1/endpoints", json={"url": url, "name": ENDPOINT_NAME, "language": "en"}
    ) as answer:
        created = await answer.json()
        if answer.status != 201:
            raise RuntimeError(f"the demo's endpoint was refused: {created}")
    stored["endpoint"], stored["endpoint_secret"] = created["id"], created["secret"]
    stored.pop("policy", None)  # a policy of an endpoint gone: made again
    return str(created["secret"])


async def _policy(session: aiohttp.ClientSession, stored: dict[str, str]) -> None:
    known = stored.get("policy")
    if known:
        async with session.get(f"/v1/policies/{known}") as answer:
            if answer.status == 200:
                return
    body = {
        "name": POLICY_NAME,
        "types": ["gas_release"],
        "steps": [{"endpoints": [stored["endpoint"]], "waitS": STEP_WAIT_S, "repeat": STEP_REPEAT}],
    }
    async with session.post("/v1/policies", json=body) as answer:
        created = await answer.json()
        if answer.status != 201:
            raise RuntimeError(f"the demo's policy was refused: {created}")
    stored["policy"] = created["id"]
