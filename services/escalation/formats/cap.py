"""CAP 1.2 alerts (OASIS Common Alerting Protocol) of incident changes, for safety centers.

`render_cap(change, site, origin=..., language=..., earlier=...)` is the one entry point: it turns
an `IncidentChange` from the INCIDENTS stream and the incident's site from the registry into an
`<alert>` valid against the OASIS `cap12.xsd`, and returns it with what a later alert needs to
reference it. Pure: no clock (every time comes from the change), no I/O.

One alert per incident change and language; its identifier and `sent` are derived from the
change, so rendering the same change again (a retry, a restart, a second worker) gives the same
bytes and a receiver can drop the copy. The first alert an endpoint gets is an `Alert`, the
later ones `Update`s, the one for a resolved or closed incident a `Cancel`; each names the
earlier alerts in `references`, which the caller keeps per endpoint and incident.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Literal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.contracts import IncidentChange
from services.common.errors import SafetyhubError
from services.common.sites.model import Site
from services.escalation.formats import cap_text as text
from services.escalation.formats.cap_area import area
from services.escalation.formats.cap_text import LANGUAGE_TAG, Language

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"
MsgType = Literal["Alert", "Update", "Cancel"]
CapStatus = Literal["Actual", "Exercise", "Test"]
# The radius of the circle drawn around an incident's position when no zone outlines it: a
# plant's typical initial isolation distance for a small release.
DEFAULT_RADIUS_KM = 0.3

# CAP 1.2 (3.2.1) forbids spaces, commas and the restricted characters < and & in sender and
# identifier; references are space- and comma-separated triples of them.
_CAP_TOKEN = re.compile(r"[^\s,<&]+")
# What an identifier part may hold as it is; any other part goes in hashed.
_SAFE_PART = re.compile(r"[A-Za-z0-9._:@-]{1,80}")
_PREFIX = "safetyhub"


class CapError(SafetyhubError, ValueError):
    """A CAP alert cannot be made with these settings; the message names the field.

    A ValueError too, so a settings Struct decoded by msgspec reports it as a validation error.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class CapOrigin(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who sends the alerts and how: the same for every alert of a hub (or of a tenant).

    `sender` identifies the originator (CAP suggests an address or a URN, e.g.
    "safetyhub@safety.example.org"); `name` is its human name (<senderName>); `web` a page with
    more information (<web>), where "{incident_id}" stands for the incident's id
    ("https://hub.example.org/incidents/{incident_id}"). `status` is "Actual" in operation,
    "Exercise" or "Test" in drills. `restriction`: who may see the alerts (a plant's own control
    room, say); set, it makes the alerts' scope Restricted, else they are Public.
    """

    sender: str
    name: str = ""
    web: str = ""
    status: CapStatus = "Actual"
    restriction: str = ""
    circle_radius_km: float = DEFAULT_RADIUS_KM

    def __post_init__(self) -> None:
        if not _CAP_TOKEN.fullmatch(self.sender):
            raise CapError("sender", "must be non-empty, without spaces, commas, '<' or '&'")
        if self.web and not _absolute_url(self.web_of("01ARZ3NDEKTSV4RRFFQ69G5FAV")):
            raise CapError("web", "must be an absolute http or https URL")
        if not 0 < self.circle_radius_km <= 1000:
            raise CapError("circle_radius_km", "must be above 0 and at most 1000")

    def web_of(self, incident_id: str) -> str:
        """The <web> link of one incident ("" when none is configured)."""
        return self.web.replace("{incident_id}", quote(incident_id, safe=""))


class CapReference(msgspec.Struct, frozen=True, kw_only=True):
    """An alert as a later one names it: CAP's "sender,identifier,sent"."""

    sender: str
    identifier: str
    sent: str

    def __str__(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"

    @classmethod
    def parse(cls, value: str) -> CapReference:
        """The reference `str()` wrote (as kept by the caller between alerts)."""
        parts = value.split(",")
        if len(parts) != 3 or not all(_CAP_TOKEN.fullmatch(part) for part in parts):
            raise CapError("references", f"{value!r} is not sender,identifier,sent")
        return cls(sender=parts[0], identifier=parts[1], sent=parts[2])


class CapAlert(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered alert: the XML to send (UTF-8, with its declaration) and how to reference it."""

    identifier: str
    sender: str
    sent: str
    msg_type: MsgType
    language: Language
    xml: bytes

    @property
    def reference(self) -> CapReference:
        """What the next alert about the same incident lists in its `references`."""
        return CapReference(sender=self.sender, identifier=self.identifier, sent=self.sent)


def render_cap(
    change: IncidentChange,
    site: Site,
    *,
    origin: CapOrigin,
    language: Language,
    earlier: Sequence[CapReference] = (),
    ack_url: str = "",
) -> CapAlert:
    """The CAP 1.2 alert for one incident change, in one language, for one endpoint.

    `change`: an IncidentChange as on the INCIDENTS stream (its incident as it is after the
    change). `site`: the incident's site from the registry, for its time zone (every time is
    written in the site's offset), name, zone outlines and device positions. `language`: "ko"
    (ko-KR) or "en" (en-US); texts missing in it are taken from the other language.
    `earlier`: the alerts this endpoint already received about this incident, oldest first;
    empty for the first notice. `ack_url`: the notification's signed one-time acknowledgement
    link, given as the parameter `safetyhub:ackUrl` and as `web` when the origin names no page.

    The type is `Cancel` when the incident is resolved or closed (also with nothing earlier:
    the caller decides whether such a notice is sent), else `Alert` for the first notice and
    `Update` after it. Raises CapError only when `site` is not the incident's site.
    """
    incident = change.incident
    site_of_change = change.envelope.site or incident.envelope.site
    if site_of_change and site_of_change != site.id:
        raise CapError("site", f"the incident is at {site_of_change!r}, not at {site.id!r}")
    zone = _zone(site)
    ended = incident.status in text.ENDED
    identifier = cap_identifier(change, language)
    before = [ref for ref in earlier if (ref.sender, ref.identifier) != (origin.sender, identifier)]
    msg_type: MsgType = "Cancel" if ended else ("Update" if before else "Alert")
    sent = cap_time(_sent(change), zone)

    alert = ET.Element(_tag("alert"))
    _add(alert, "identifier", identifier)
    _add(alert, "sender", origin.sender)
    _add(alert, "sent", sent)
    _add(alert, "status", origin.status)
    _add(alert, "msgType", msg_type)
    _add(alert, "scope", "Restricted" if origin.restriction else "Public")
    if origin.restriction:
        _add(alert, "restriction", origin.restriction)
    if ended and (note := text.resolution(incident)):
        _add(alert, "note", note)
    # Each earlier alert once, and never this one itself (a change notified again).
    references = dict.fromkeys(str(ref) for ref in before)
    if references:
        _add(alert, "references", " ".join(references))
    if incident.incident_id:
        _add(alert, "incidents", _token(incident.incident_id))
    _info(alert, change, site, origin=origin, language=language, zone=zone, ended=ended, ack_url=ack_url)

    xml = ET.tostring(alert, encoding="UTF-8", xml_declaration=True, default_namespace=CAP_NAMESPACE)
    return CapAlert(
        identifier=identifier, sender=origin.sender, sent=sent, msg_type=msg_type, language=language, xml=xml
    )


def cap_identifier(change: IncidentChange, language: Language) -> str:
    """The alert's identifier: the same for the same change and language, unique otherwise.

    "safetyhub.<tenant>.<incident id>.<change id>.<ko|en>" (a part with characters CAP forbids
    is replaced by its hash).
    """
    tenant = change.envelope.tenant or change.incident.envelope.tenant
    incident_id = change.incident_id or change.incident.incident_id
    change_id = change.entry.id or change.envelope.id
    parts = (_PREFIX, tenant, incident_id, change_id, language)
    return ".".join(_token(part) for part in parts)


def cap_time(moment: datetime, zone: tzinfo) -> str:
    """`YYYY-MM-DDThh:mm:ss+hh:mm` in `zone`: CAP allows no fractions of a second and no "Z".

    UTC is written `+00:00`; a moment the zone cannot write in whole minutes (local mean time
    before 1900) or at all (the ends of the calendar) is written in UTC.
    """
    if moment.tzinfo is None:
        raise ValueError("a CAP time needs a time zone")
    try:
        local = moment.astimezone(zone)
        offset = local.utcoffset()
    except OverflowError:
        local, offset = moment.astimezone(UTC), None
    if offset is not None and offset.total_seconds() % 60:
        local = moment.astimezone(UTC)
    written = local.replace(microsecond=0).isoformat()
    return written if written[-6] in "+-" else written + "+00:00"


def _info(
    alert: ET.Element,
    change: IncidentChange,
    site: Site,
    *,
    origin: CapOrigin,
    language: Language,
    zone: tzinfo,
    ended: bool,
    ack_url: str,
) -> None:
    incident = change.incident
    info = ET.SubElement(alert, _tag("info"))
    _add(info, "language", LANGUAGE_TAG[language])
    for category in text.categories(incident):
        _add(info, "category", category)
    _add(info, "event", text.event(incident, language))
    for response in text.response_types(incident):
        _add(info, "responseType", response)
    _add(info, "urgency", text.URGENCY.get(incident.urgency, "Unknown"))
    _add(info, "severity", text.SEVERITY.get(incident.severity, "Unknown"))
    _add(info, "certainty", text.CERTAINTY.get(incident.certainty, "Unknown"))
    _value(info, "eventCode", "safetyhub:type", text.TYPE_CODES.get(incident.type, "unspecified"))
    if _is_set(incident.opened_at):
        _add(info, "onset", cap_time(_datetime(incident.opened_at), zone))
    _add(info, "senderName", origin.name or site.name)
    _add(info, "headline", text.headline(incident, language, ended=ended))
    _add(info, "description", text.description(change, site, language))
    instruction = "" if ended else text.instruction(incident, language)
    if instruction:
        _add(info, "instruction", instruction)
    # CAP's <web> is one hyperlink "for additional information": the origin's incident page, else
    # the acknowledgement link (its page shows the incident before anything is acknowledged).
    if origin.web:
        _add(info, "web", origin.web_of(incident.incident_id))
    elif ack_url:
        _add(info, "web", ack_url)
    _value(info, "parameter", "safetyhub:status", text.STATUS_CODES.get(incident.status, "unspecified"))
    if change.entry.change:
        _value(info, "parameter", "safetyhub:change", change.entry.change)
    _value(info, "parameter", "safetyhub:version", str(incident.version))
    if ack_url:
        _value(info, "parameter", "safetyhub:ackUrl", ack_url)

    where = area(incident, site, radius_km=origin.circle_radius_km)
    block = ET.SubElement(info, _tag("area"))
    _add(block, "areaDesc", _area_description(change, site))
    for ring in where.polygons:
        _add(block, "polygon", ring)
    for circle in where.circles:
        _add(block, "circle", circle)


def _area_description(change: IncidentChange, site: Site) -> str:
    # Zone and site names are the registry's, in one language: the same in every alert.
    zones = text.zone_names(change.incident, site)
    return f"{', '.join(zones)} - {site.name}" if zones else site.name


def _tag(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _add(parent: ET.Element, name: str, value: str) -> ET.Element:
    # ElementTree escapes &, < and > itself; what XML cannot carry even escaped is replaced.
    element = ET.SubElement(parent, _tag(name))
    element.text = text.xml_text(value)
    return element


def _value(parent: ET.Element, name: str, value_name: str, value: str) -> None:
    pair = ET.SubElement(parent, _tag(name))
    _add(pair, "valueName", value_name)
    _add(pair, "value", value)


def _token(part: str) -> str:
    if _SAFE_PART.fullmatch(part):
        return part
    return "h" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _sent(change: IncidentChange) -> datetime:
    # The change's own time: the same alert rendered twice is sent "at" the same instant.
    for stamp in (change.entry.time, change.envelope.time, change.incident.updated_at):
        if _is_set(stamp):
            return _datetime(stamp)
    return datetime(1970, 1, 1, tzinfo=UTC)


def _is_set(stamp: Timestamp) -> bool:
    return bool(stamp.seconds or stamp.nanos)


def _datetime(stamp: Timestamp) -> datetime:
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        # Outside what a datetime holds (the contract never writes such a time): the epoch.
        return datetime(1970, 1, 1, tzinfo=UTC)


def _zone(site: Site) -> tzinfo:
    try:
        return ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        # The registry validates time zones at load; a site built otherwise is written in UTC.
        return UTC


def _absolute_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in value)
