"""POST /v1/integrations/alertmanager: Prometheus Alertmanager's webhook receiver.

An Alertmanager `webhook_configs` entry posts here with a gateway key (`http_config.authorization`,
`credentials_file`). Each alert becomes one observation (domain/alertmanager.py) published as a
posted reading is, and the answer is 202 once JetStream has them. A body that is not version 4 or
not its shape, and an alert whose label names no site of the key's tenant, are answered 422
naming the field or the label; alerts of a notification that are otherwise refused are listed in
`rejected` beside the accepted (422 when none is accepted). Alertmanager retries a notification
that failed: the retry is the same observations again, kept once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from services.common.bus.publisher import OutgoingMessage, Published
from services.common.http.body import check_encoding, read_body
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem
from services.common.sites.registry import SiteRegistry
from services.ingest import metrics
from services.ingest.alertmanager_config import AlertmanagerConfig
from services.ingest.domain.alertmanager import AlertProblem, decode, observations
from services.ingest.domain.checks import ItemError, authorize
from services.ingest.intake import Checked, Limits, encode_checked
from services.ingest.permissions import POST_OBSERVATIONS

PATH = "/v1/integrations/alertmanager"
# Alertmanager caps a notification's alerts with max_alerts; a group of thousands is still small.
MAX_BODY = 8 * 1024 * 1024


def _errors(errors: list[ItemError]) -> list[dict[str, object]]:
    return [{"index": e.index, "field": e.field, "detail": e.detail} for e in errors[:1000]]


class AlertmanagerApi:
    def __init__(
        self,
        registry: Callable[[], SiteRegistry],
        publish: Callable[[list[OutgoingMessage], int], Awaitable[Published]],
        config: AlertmanagerConfig,
        limits: Limits,
        *,
        max_payload: int,
        body_timeout_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._registry = registry
        self._publish = publish
        self._config = config
        self._limits = limits
        self._max_payload = max_payload
        self._body_timeout = body_timeout_s
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.post)

    async def post(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if request.content_type != "application/json":
            metrics.REJECTED.labels("unsupported_media_type").inc()
            raise Problem(
                415,
                "Unsupported media type",
                f"Content-Type '{request.content_type[:80]}' is not accepted;"
                " Alertmanager sends application/json",
                headers={"Accept-Post": "application/json"},
            )
        check_encoding(request)
        if not principal.may(POST_OBSERVATIONS):
            metrics.REJECTED.labels("forbidden").inc()
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not post observations")
        body = await read_body(request, limit=MAX_BODY, time_limit_s=self._body_timeout)
        try:
            webhook = decode(body)
        except AlertProblem as err:
            metrics.REJECTED.labels("malformed").inc()
            title = "Malformed body" if err.status == 400 else "Invalid notification"
            errors = [{"field": err.field, "detail": err.detail}]
            raise Problem(
                err.status, title, str(err)[:500], slug="invalid-notification", errors=errors
            ) from err
        metrics.RECEIVED.inc(len(webhook.alerts))
        registry, now = self._registry(), self._clock()
        mapped = observations(
            webhook, self._config, registry, tenant=principal.tenant, now=now, limits=self._limits
        )
        if mapped.unknown_sites:
            metrics.REJECTED.labels("invalid").inc(len(webhook.alerts))
            first = mapped.unknown_sites[0]
            raise Problem(
                422,
                "Unknown site",
                f"{first.field}: {first.detail}",
                slug="invalid-notification",
                errors=_errors(mapped.unknown_sites),
            )
        pairs = zip(mapped.positions, mapped.items, strict=True)
        refusals = [r for i, item in pairs if (r := authorize(item, i, principal, registry))]
        if refusals:
            metrics.REJECTED.labels("forbidden").inc(len(webhook.alerts))
            raise Problem(
                403,
                "Forbidden",
                refusals[0].reason,
                errors=[
                    {"index": r.index, "field": f"alerts[{r.index}].labels", "detail": r.reason}
                    for r in refusals[:1000]
                ],
            )
        checked = Checked(valid=mapped.items, positions=mapped.positions, errors=mapped.errors)
        encoded = encode_checked(
            checked,
            tenant=principal.tenant,
            source=f"/ingest/alertmanager/{principal.key_id}",
            received=now,
            max_payload=self._max_payload,
        )
        if checked.errors:
            metrics.REJECTED.labels("invalid").inc(len(checked.errors))
        accepted = [message_id for message_id in encoded.ids if message_id]
        if not encoded.messages:
            detail = checked.errors[0].detail if checked.errors else "the notification carries no alert"
            field = checked.errors[0].field if checked.errors else "alerts"
            raise Problem(
                422,
                "Invalid notification",
                f"{field}: {detail}",
                slug="invalid-notification",
                errors=_errors(checked.errors) or [{"field": "alerts", "detail": detail}],
            )
        published = await self._publish(encoded.messages, len(accepted))
        metrics.count_accepted(len(accepted), encoded.messages, published, out_of_range=())
        answer = {"accepted": accepted, "rejected": _errors(checked.errors)}
        return web.Response(status=202, body=msgspec.json.encode(answer), content_type="application/json")
