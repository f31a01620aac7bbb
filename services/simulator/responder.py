"""A simulated responder: works the tenant's incidents through the REST API, as a phone app would.

The demo's field responder signs in with a person's token (a JWT signed with the hub's own key,
as `safetyhub tokens issue` makes one) and every few seconds reads the open incidents. An
incident open for `ack_after_s` is acknowledged (which takes it); one of the responder's,
acknowledged `travel_s` ago, is dispatched (on scene); one of the responder's, dispatched, whose
alarms have all returned for `settle_s`, is resolved with the cause code its type suggests. Every
change sends the incident's version in If-Match; a 412 (fusion or another person changed it
meanwhile) or a 409 is left to the next round, which reads it again. The hub is a black box here.

`decide` is pure (time as a parameter): what to do with one listed incident now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from services.common.logging import get_logger

log = get_logger("safetyhub.simulator.responder")

# The cause a responder gives, by incident type (domain/lifecycle.py's CAUSE_CODES).
CAUSES = {
    "gas_release": "leak_isolated",
    "fire": "fire_extinguished",
    "person_down": "person_rescued",
    "equipment_fault": "equipment_repaired",
}
NOTES = {
    "ack": "On my way (simulated responder).",
    "dispatch": "On scene, reading the detectors.",
    "resolve": "Source isolated; the readings are back to normal.",
}
_LIVE = ("open", "acknowledged", "dispatched")
_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    ack_after_s: float = 8.0  # from the incident's opening to its acknowledgement
    travel_s: float = 12.0  # from acknowledging to being on scene (dispatched)
    settle_s: float = 10.0  # every alarm returned this long before resolving
    interval_s: float = 2.0  # between two reads of the list


@dataclass(frozen=True, slots=True)
class Step:
    action: str  # ack, dispatch, resolve
    body: dict[str, str]


@dataclass(slots=True)
class Memory:
    """What the responder noticed of each incident between rounds: when its state was first seen."""

    since: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (incident, state) -> first seen

    def first_seen(self, incident: str, state: str, now: datetime) -> datetime:
        return self.since.setdefault((incident, state), now)

    def forget_all_but(self, incidents: set[str]) -> None:
        self.since = {key: at for key, at in self.since.items() if key[0] in incidents}


def decide(
    item: dict[str, Any], me: str, now: datetime, config: ResponderConfig, memory: Memory
) -> Step | None:
    """The next step for one incident as `GET /v1/incidents` lists it, or None (wait)."""
    status, incident = item["status"], item["id"]
    mine = item.get("assignee") == me
    if status == "open":
        opened = datetime.fromisoformat(item["openedAt"])
        if (now - opened).total_seconds() >= config.ack_after_s:
            return Step("ack", {"note": NOTES["ack"]})
        return None
    if status == "acknowledged" and mine:
        taken = memory.first_seen(incident, status, now)
        if (now - taken).total_seconds() >= config.travel_s:
            return Step("dispatch", {"note": NOTES["dispatch"]})
        return None
    if status == "dispatched" and mine:
        if item.get("activeAlarms", 0) > 0:
            memory.since.pop((incident, "clear"), None)
            return None
        clear = memory.first_seen(incident, "clear", now)
        if (now - clear).total_seconds() >= config.settle_s:
            code = CAUSES.get(item["type"], "other")
            return Step("resolve", {"code": code, "note": NOTES["resolve"]})
    return None


async def run_responder(
    base_url: str,
    token: Callable[[], Awaitable[str]],
    me: str,
    stop: asyncio.Event,
    *,
    config: ResponderConfig | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Works the incidents the token's tenant and sites show until `stop` is set. `token` makes a
    fresh person's token (called at start and again when the hub answers 401); `me` is its
    subject, the name the incidents' assignee shows."""
    cfg = config or ResponderConfig()
    memory = Memory()
    url = base_url.rstrip("/")
    query = "&".join(f"status={s}" for s in _LIVE)
    bearer = await token()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S)) as http:
        while not stop.is_set():
            try:
                async with http.get(
                    f"{url}/v1/incidents?{query}&limit=100", headers={"Authorization": f"Bearer {bearer}"}
                ) as response:
                    if response.status == 401:
                        bearer = await token()
                        continue
                    listed = await response.json() if response.status == 200 else {"items": []}
                now = clock()
                items = listed["items"]
                memory.forget_all_but({item["id"] for item in items})
                for item in items:
                    step = decide(item, me, now, cfg, memory)
                    if step is not None and not stop.is_set():
                        await _act(http, url, bearer, item, step)
            except (aiohttp.ClientError, TimeoutError) as err:
                log.warning("responder_unreachable", error=str(err) or type(err).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.interval_s)


async def _act(http: aiohttp.ClientSession, url: str, bearer: str, item: dict[str, Any], step: Step) -> None:
    headers = {"Authorization": f"Bearer {bearer}", "If-Match": f'"{item["version"]}"'}
    async with http.post(
        f"{url}/v1/incidents/{item['id']}/{step.action}", json=step.body, headers=headers
    ) as r:
        outcome = r.status
        await r.read()
    # 412: changed since the list was read (an alarm joined); 409: someone else moved it on. The
    # next round reads it again.
    log.info(
        "responder_acted",
        site=item["site"],
        incident_id=item["id"],
        action=step.action,
        status=outcome,
    )
