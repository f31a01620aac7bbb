"""A notification in the format its endpoint asked for: a CloudEvent (JSON) or a CAP 1.2 alert.

The body is rendered once, when the delivery is queued, and sent as it is on every attempt, so a
retry carries the same bytes and the same `webhook-id`. A CAP alert's reference is kept on its
delivery row; the next alert to the same endpoint about the same incident lists the earlier ones
(`references`) and is an `Update`, or a `Cancel` once the incident is resolved or closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.common.contracts import IncidentChange
from services.common.sites.model import LatLon, Site
from services.common.sites.registry import SiteRegistry
from services.escalation.ack_links import AckLinks
from services.escalation.adapters.cloudevent import CONTENT_TYPE as JSON_CONTENT_TYPE
from services.escalation.adapters.cloudevent import cloudevent
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.incident_change import ChangeMessage
from services.escalation.formats import CAP_CONTENT_TYPE, CapOrigin, CapReference, Language, render_cap


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    cap_reference: str | None = None


class Renderer:
    def __init__(
        self, origin: CapOrigin, sites: Callable[[], SiteRegistry], links: AckLinks | None = None
    ) -> None:
        self._origin = origin
        self._sites = sites
        self._links = links

    def render(
        self,
        change: ChangeMessage,
        endpoint: EndpointRow,
        delivery_id: str,
        extra: dict[str, object] | None = None,
        earlier: Sequence[str] = (),
    ) -> Rendered:
        """`earlier`: the references of the CAP alerts this endpoint was sent about this incident,
        oldest first (ignored for JSON). A notification of an incident awaiting acknowledgement
        carries its signed one-time acknowledgement link (ack_links.py) when the hub has a public URL."""
        ack_url = self._links.url(change, endpoint, delivery_id) if self._links is not None else None
        if endpoint.format != "cap":
            body = cloudevent(change, delivery_id, endpoint.language, extra, ack_url=ack_url)
            return Rendered(body, JSON_CONTENT_TYPE)
        language: Language = "ko" if endpoint.language == "ko" else "en"
        alert = render_cap(
            _as_notified(change, delivery_id),
            self._site(change),
            origin=self._origin,
            language=language,
            earlier=[CapReference.parse(ref) for ref in earlier],
            ack_url=ack_url or "",
        )
        return Rendered(alert.xml, CAP_CONTENT_TYPE, str(alert.reference))

    def _site(self, change: ChangeMessage) -> Site:
        site = self._sites().site(change.site)
        if site is not None:
            return site
        # A site since removed from the registry: the alert is still sent, in UTC, with the
        # incident's own position for its area.
        incident = change.message.incident
        return Site(
            id=change.site,
            tenant=change.tenant,
            name=change.site,
            kind="plant",
            timezone="UTC",
            location=LatLon(lat=incident.latitude, lon=incident.longitude),
        )


def _as_notified(change: ChangeMessage, delivery_id: str) -> IncidentChange:
    """The IncidentChange to render: the change itself, or for an escalation step (a notification
    of the incident as its latest change left it) a copy with the step's own identity and time, so
    its alert is a new one (an Update) and not the latest change's again."""
    message = change.message
    if change.change == message.entry.change:
        return message
    copy = IncidentChange()
    copy.CopyFrom(message)
    copy.entry.id = delivery_id
    copy.entry.change = change.change
    copy.entry.time.CopyFrom(_timestamp(change.at))
    return copy


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp
