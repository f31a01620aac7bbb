"""The signed one-time acknowledgement link a notification carries (`ackUrl`; CAP: `web` and the
parameter `safetyhub:ackUrl`): `<http.public_url>/v1/ack/<token>`, served by the incidents service.

Signed with the hub's own key (every hub process shares it through PostgreSQL), loaded once at
start. A link is made only while the incident awaits acknowledgement (status open): an
acknowledged, dispatched or resolved incident's notices carry none. Without `http.public_url` no
link is made at all: a notification never carries a link that leads nowhere.

The token's id is the delivery's id (its `webhook-id`) and its times come from the change, so a
notification rendered twice is the same bytes; each notification has its own link, used once.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.common.auth.hub_key import HubKey, hub_key
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.incident_change import ChangeMessage
from services.incidents.ack_token import AckClaims, sign_ack
from services.incidents.adapters.messages import STATUS
from services.incidents.domain.model import Status

# The incidents service's route (services/incidents/ack_api.py).
ACK_PATH = "/v1/ack/"
_OPEN = STATUS[Status.OPEN]
# The endpoint's name in the token (the actor the timeline shows), bounded so the link stays short.
_NAME_MAX = 64


@dataclass(slots=True)
class AckLinks:
    """Makes the links; `public_url` "" makes none."""

    public_url: str
    ttl_s: float
    _key: HubKey | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.public_url)

    async def load(self, pool: asyncpg.Pool) -> None:
        """The hub's key (made now if the hub has none yet); before the first notification."""
        if self.enabled:
            self._key = await hub_key(pool)

    def url(self, change: ChangeMessage, endpoint: EndpointRow, delivery_id: str) -> str | None:
        """The link for this notification, or None (no public URL, or nothing to acknowledge)."""
        if not self.enabled or self._key is None or change.message.incident.status != _OPEN:
            return None
        issued = int(change.at.timestamp())
        claims = AckClaims(
            tenant=change.tenant,
            site=change.site,
            incident_id=change.incident_id,
            endpoint_id=endpoint.id,
            jti=delivery_id,
            name=(endpoint.name or "")[:_NAME_MAX],
            issued_at=issued,
            expires_at=issued + int(self.ttl_s),
        )
        return self.public_url.rstrip("/") + ACK_PATH + sign_ack(self._key, claims)
