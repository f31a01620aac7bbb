"""POST /v1/observations: validate, publish to JetStream, answer 202 once the stream has them.

Batches are partly accepted: valid items are published and listed in `accepted`, invalid ones in
`rejected` with index, field and reason (202). Only when no item is valid is the answer 422. A key
posting for a site it may not post for gets 403 for the whole request: that is a misconfigured
gateway, and accepting half its data would hide it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from services.common.auth.principal import Principal
from services.common.bus.channel import ChannelPublisher
from services.common.bus.publisher import (
    NothingSent,
    OutgoingMessage,
    Published,
    PublishRejected,
)
from services.common.contracts import ObservationBatch
from services.common.errors import UnavailableError
from services.common.http.body import check_encoding, read_body
from services.common.http.middleware import REFUSALS, caller_of, principal_of
from services.common.http.problem import Problem
from services.common.sites.registry import SiteRegistry
from services.ingest import metrics
from services.ingest.config import IngestConfig
from services.ingest.domain.checks import ItemError, authorize
from services.ingest.domain.parse import MalformedBody, Parsed, TooManyItems, parse_json, parse_ndjson
from services.ingest.intake import Limits, check_all, encode_checked
from services.ingest.permissions import POST_OBSERVATIONS

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson"})

_BODY_REASONS = {413: "too_large", 408: "timeout", 415: "unsupported_media_type"}

# What a 503 can truthfully say. When NATS is not connected nothing was sent. When JetStream does
# not answer in time the messages may be in the stream already (a frozen server stores them when
# it resumes), so the answer cannot say they are not; it says when a retry is safe instead. The
# store keeps one row per (tenant, id, time): only an item with its own time is the same row on a retry.
NOT_SENT = (
    "The event bus is not connected: nothing of this request was sent, so nothing of this request"
    " was accepted. Retrying it is safe."
)
MAYBE_STORED = (
    "The event bus did not confirm this request in time; it may or may not have been stored."
    " Retrying is safe for items that carry their time: a retry gives each the same id and time,"
    " and each is stored once. An item without a time is stamped with the time the hub receives"
    " it: with an id, a retry within the stream's duplicate window (120 s by default) is dropped"
    " as a duplicate; without an id, a retry of it may store it twice."
)


def _errors(errors: list[ItemError]) -> list[dict[str, object]]:
    return [{"index": e.index, "field": e.field, "detail": e.detail} for e in errors[:1000]]


class IngestApi:
    def __init__(
        self,
        registry: Callable[[], SiteRegistry],
        publisher: ChannelPublisher[ObservationBatch],
        config: IngestConfig,
        *,
        body_timeout_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._registry = registry
        self._publisher = publisher
        self._config = config
        self._limits = Limits.of(config)
        self._clock = clock
        self._body_timeout = body_timeout_s

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/observations", self.post_observations)

    def _parse(self, content_type: str, body: bytes) -> Parsed:
        try:
            if content_type in JSON_TYPES:
                return parse_json(body, self._config.max_items)
            return parse_ndjson(body, self._config.max_items)
        except MalformedBody as err:
            metrics.REJECTED.labels("malformed").inc()
            raise Problem(400, "Malformed body", str(err)[:500]) from err
        except TooManyItems as err:
            metrics.REJECTED.labels("too_large").inc()
            raise Problem(413, "Payload too large", str(err), max_items=self._config.max_items) from err

    async def _read(self, request: web.Request, principal: Principal) -> tuple[str, bytes]:
        """The media type and the (inflated) body, in the documented order of checks: the key
        (middleware), media type and encoding, role, body. Nothing of the body is read before
        the key and its role allow it."""
        content_type = request.content_type
        if content_type not in JSON_TYPES and content_type not in NDJSON_TYPES:
            metrics.REJECTED.labels("unsupported_media_type").inc()
            raise Problem(
                415,
                "Unsupported media type",
                f"Content-Type '{content_type[:80]}' is not accepted;"
                " send application/json or application/x-ndjson",
                headers={"Accept-Post": "application/json, application/x-ndjson"},
            )
        try:
            check_encoding(request)
        except Problem:
            metrics.REJECTED.labels("unsupported_media_type").inc()
            raise
        if not principal.may(POST_OBSERVATIONS):
            metrics.REJECTED.labels("forbidden").inc()
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not post observations")
        try:
            body = await read_body(
                request, limit=self._config.max_body_mb * 1024 * 1024, time_limit_s=self._body_timeout
            )
        except Problem as problem:
            metrics.REJECTED.labels(_BODY_REASONS.get(problem.status, "malformed")).inc()
            raise
        return content_type, body

    async def publish(self, messages: list[OutgoingMessage], accepted: int) -> Published:
        """Publish `accepted` observations; 503 (problem+json) when JetStream does not take them."""
        try:
            return await self._publisher.publish(messages)
        except NothingSent as err:
            metrics.REJECTED.labels("unavailable").inc(accepted)
            raise Problem(503, "Service unavailable", NOT_SENT, headers={"Retry-After": "2"}) from err
        except UnavailableError as err:
            metrics.REJECTED.labels("unavailable").inc(accepted)
            raise Problem(503, "Service unavailable", MAYBE_STORED, headers={"Retry-After": "2"}) from err
        except PublishRejected as err:
            metrics.REJECTED.labels("unavailable").inc(accepted)
            raise Problem(
                503,
                "Service unavailable",
                f"JetStream refused this request ({err}); some of it may have been stored."
                " Retrying is safe for items that carry their time.",
                headers={"Retry-After": "5"},
            ) from err

    async def post_observations(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        principal = principal_of(request)
        content_type, body = await self._read(request, principal)
        parsed = self._parse(content_type, body)
        metrics.RECEIVED.inc(parsed.count)

        registry = self._registry()
        refusals = [r for i, item in parsed.items if (r := authorize(item, i, principal, registry))]
        if refusals:
            metrics.REJECTED.labels("forbidden").inc(parsed.count)
            raise Problem(
                403,
                "Forbidden",
                refusals[0].reason,
                errors=[{"index": r.index, "field": r.field, "detail": r.reason} for r in refusals[:1000]],
            )

        now = self._clock()
        checked = check_all(parsed.items, registry, now, self._limits)
        checked.errors[:0] = parsed.errors
        encoded = encode_checked(
            checked,
            tenant=principal.tenant,
            source=f"/ingest/keys/{principal.key_id}",
            received=now,
            max_payload=self._publisher.max_payload,
        )
        errors = checked.errors
        if errors:
            metrics.REJECTED.labels("invalid").inc(len(errors))
        messages = encoded.messages
        accepted = [message_id for message_id in encoded.ids if message_id]
        if not messages:
            if parsed.count > 1:
                detail = "no item of the request is valid"
            elif errors:
                detail = errors[0].detail
            else:
                detail = "the request carries no observation; send one object, an array or NDJSON lines"
            raise Problem(
                422,
                "Invalid observations",
                detail,
                slug="invalid-observations",
                errors=_errors(errors),
                items=parsed.count,
            )
        if errors:
            # A partly refused post is still a gateway sending something wrong: say so in the log.
            REFUSALS.refused(
                "observations_rejected",
                who=caller_of(request),
                reason=errors[0].field or "item",
                detail=errors[0].detail[:300],
                items=parsed.count,
                rejected=len(errors),
            )

        published = await self.publish(messages, len(accepted))

        metrics.count_accepted(len(accepted), messages, published, out_of_range=encoded.out_of_range)
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        answer = {
            "accepted": accepted,
            "rejected": _errors(errors),
        }
        return web.Response(status=202, body=msgspec.json.encode(answer), content_type="application/json")
