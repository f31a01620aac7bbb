"""An NGSI-LD context broker's batch upsert, as the exporter needs it: what succeeded, what the
broker refused (4xx, with its answer) and what to try again (5xx, timeouts, a broker down).

    POST <url>/ngsi-ld/v1/entityOperations/upsert   Content-Type: application/ld+json
    201 / 204: every entity created or replaced; 207: a BatchOperationResult naming each failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from services.feed.config import NgsiConfig

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"
# Statuses worth trying again: the broker, or something before it, was busy or down.
_TRANSIENT = frozenset({408, 425, 429})
_ANSWER_CHARS = 2000


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    """Per entity id: done, refused (status, the broker's answer) or to retry (why)."""

    done: set[str] = field(default_factory=set)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    retry: dict[str, str] = field(default_factory=dict)


def transient(status: int) -> bool:
    return status >= 500 or status in _TRANSIENT


class NgsiClient:
    def __init__(self, config: NgsiConfig) -> None:
        self._config = config
        self._url = config.url.rstrip("/") + UPSERT_PATH
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def upsert(self, entities: list[dict[str, Any]]) -> UpsertOutcome:
        if self._session is None:
            raise RuntimeError("NgsiClient.start was not called")
        ids = [str(e["id"]) for e in entities]
        headers = {"Content-Type": "application/ld+json", "Accept": "application/json"}
        if self._config.tenant:
            headers["NGSILD-Tenant"] = self._config.tenant
        try:
            async with self._session.post(
                self._url, data=msgspec.json.encode(entities), headers=headers
            ) as resp:
                status, text = resp.status, (await resp.text(errors="replace"))[:_ANSWER_CHARS]
        except (aiohttp.ClientError, TimeoutError) as err:
            why = f"{type(err).__name__}: {err}"
            return UpsertOutcome(retry=dict.fromkeys(ids, why))
        if status in (200, 201, 204):
            return UpsertOutcome(done=set(ids))
        if status == 207:
            return _multi_status(ids, text)
        if transient(status):
            return UpsertOutcome(retry=dict.fromkeys(ids, f"HTTP {status}: {text}"))
        return UpsertOutcome(refused=dict.fromkeys(ids, (status, text)))


def _multi_status(ids: list[str], text: str) -> UpsertOutcome:
    """A BatchOperationResult: `success` ids and `errors` [{entityId, error: {status, ...}}]."""
    try:
        result = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return UpsertOutcome(retry=dict.fromkeys(ids, f"HTTP 207 not JSON: {text}"))
    failed: dict[str, tuple[int, str]] = {}
    for error in result.get("errors", []) if isinstance(result, dict) else []:
        entity_id = str(error.get("entityId", ""))
        detail = error.get("error", {})
        status = detail.get("status", 400) if isinstance(detail, dict) else 400
        failed[entity_id] = (int(status), msgspec.json.encode(detail).decode()[:_ANSWER_CHARS])
    outcome = UpsertOutcome()
    for entity_id in ids:
        if entity_id not in failed:
            outcome.done.add(entity_id)
        elif transient(failed[entity_id][0]):
            outcome.retry[entity_id] = failed[entity_id][1]
        else:
            outcome.refused[entity_id] = failed[entity_id]
    return outcome
