"""INCIDENTS and ALARMS messages read as the facts a sharing policy projects (domain/facts.py).

Incident changes carry everything the feed knows of an incident. Alarm transitions carry a
point's state, not its place: the zone and position come from the site registry in use, as the
incidents service reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from nats.aio.msg import Msg

from services.alarms.adapters.wire import from_timestamp
from services.alarms.domain.model import AlarmState
from services.common.bus.channel import ChannelSubscriber
from services.common.contracts import AlarmClass as AlarmClassPb
from services.common.contracts import AlarmPriority as AlarmPriorityPb
from services.common.contracts import CapCertainty, CapSeverity, CapUrgency, IncidentChange
from services.common.contracts import IncidentMember as IncidentMemberPb
from services.common.contracts import IncidentStatus as IncidentStatusPb
from services.common.contracts import IncidentType as IncidentTypePb
from services.common.sites.model import Site
from services.common.sites.registry import SiteRegistry
from services.feed.domain.facts import AlarmFacts, IncidentFacts, Member, Position, SitePlaces
from services.feed.domain.projection import MEMBERS_CARRIED
from services.incidents.adapters.signals import AlarmMessage, read_alarm_message
from services.incidents.channel import INCIDENT_CHANNEL

INCIDENTS_IN = ChannelSubscriber(INCIDENT_CHANNEL)
# An activation: the point enters an alarmed state from a quiet one (what hourly counts count).
_QUIET = frozenset({AlarmState.NORM, AlarmState.RTNUN})
_ALARMED = frozenset({AlarmState.UNACK, AlarmState.ACKED})


def _name(prefix: str, name: str) -> str:
    return name.removeprefix(prefix).lower()


def _cap(prefix: str, name: str) -> str:
    return name.removeprefix(prefix).capitalize()


def read_incident_message(msg: Msg) -> IncidentFacts:
    """Decoder for the INCIDENTS consumer (undecodable or off its subject: Poison)."""
    change = INCIDENTS_IN.decode(msg)
    env = change.envelope
    INCIDENTS_IN.check_subject(msg, env.tenant, env.site, change.incident_id)
    return incident_facts(change)


def _member(m: IncidentMemberPb) -> Member:
    return Member(
        alarm_id=m.alarm_id,
        device=m.device,
        rule=m.rule,
        kind=m.kind,
        zone=m.zone,
        alarm_class=_name("ALARM_CLASS_", AlarmClassPb.Name(m.alarm_class)),
        priority=_name("ALARM_PRIORITY_", AlarmPriorityPb.Name(m.priority)),
        active=m.active,
        snapshot=m.snapshot,
    )


class WireMembers(Sequence[Member]):
    """An incident's members as the message holds them, each read only when asked for.

    A flood incident holds hundreds of members and each of its changes carries them all; only
    a `full` policy shares members, and then only the first few (domain/projection.py), so
    reading them all up front would cost every change of a flood what no policy sends."""

    __slots__ = ("_wire",)

    def __init__(self, wire: Sequence[IncidentMemberPb]) -> None:
        self._wire = wire

    def __len__(self) -> int:
        return len(self._wire)

    @overload
    def __getitem__(self, index: int) -> Member: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Member]: ...

    def __getitem__(self, index: int | slice) -> Member | Sequence[Member]:
        if isinstance(index, slice):
            return tuple(_member(m) for m in self._wire[index])
        return _member(self._wire[index])


def incident_facts(change: IncidentChange) -> IncidentFacts:
    env, entry, incident = change.envelope, change.entry, change.incident
    position = (
        Position(incident.latitude, incident.longitude)
        if incident.HasField("latitude") and incident.HasField("longitude")
        else None
    )
    return IncidentFacts(
        event_id=env.id,
        tenant=env.tenant,
        site=env.site,
        incident_id=change.incident_id,
        change=entry.change,
        at=from_timestamp(entry.time),
        type=_name("INCIDENT_TYPE_", IncidentTypePb.Name(incident.type)),
        status=_name("INCIDENT_STATUS_", IncidentStatusPb.Name(incident.status)),
        severity=_cap("CAP_SEVERITY_", CapSeverity.Name(incident.severity)),
        urgency=_cap("CAP_URGENCY_", CapUrgency.Name(incident.urgency)),
        certainty=_cap("CAP_CERTAINTY_", CapCertainty.Name(incident.certainty)),
        confirmed=incident.confirmed,
        opened_at=from_timestamp(incident.opened_at),
        zones=tuple(incident.zones),
        position=position,
        title=incident.title.en or incident.title.ko,
        members=WireMembers(incident.members),
        actions=tuple(a.en or a.ko for a in incident.actions),
        assignee=incident.assignee,
        resolution_code=incident.resolution_code,
        resolution_note=incident.resolution_note,
        counts=dict(incident.counts),
        what=entry.what,
        note=entry.note,
        actor=entry.actor,
        snapshots=WireSnapshots(incident.members),
    )


class WireSnapshots(Sequence[str]):
    """The pictures of an incident's carried members (its first MEMBERS_CARRIED, as `full`
    carries them), each once, read from the message only when a policy shares them: scanning a
    flood's 500 members for pictures cost more than the rest of reading its change."""

    __slots__ = ("_found", "_wire")

    def __init__(self, wire: Sequence[IncidentMemberPb]) -> None:
        self._wire = wire
        self._found: tuple[str, ...] | None = None

    def _read(self) -> tuple[str, ...]:
        if self._found is None:
            seen: dict[str, None] = {}
            for m in self._wire[:MEMBERS_CARRIED]:
                if m.snapshot:
                    seen.setdefault(m.snapshot)
            self._found = tuple(seen)
        return self._found

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._read()[index]


@dataclass(frozen=True, slots=True)
class AlarmRead:
    """An ALARMS message as the feed reads it: its transition's facts (None: a flood edge or a
    transition without its alarm, which the feed does not share)."""

    message: AlarmMessage
    facts: AlarmFacts | None


class AlarmReader:
    """Turns alarm transitions into facts, placing their devices with the site registry in use."""

    def __init__(self, sites: Callable[[], SiteRegistry]) -> None:
        self._sites = sites

    def read(self, msg: Msg) -> AlarmRead:
        """Decoder for the ALARMS consumer (undecodable: Poison, dead-lettered)."""
        message = read_alarm_message(msg)
        return AlarmRead(message, self.facts(message))

    def facts(self, message: AlarmMessage) -> AlarmFacts | None:
        transition, alarm = message.transition, message.alarm
        if transition is None or alarm is None:
            return None
        point = transition.point
        device = self._sites().device(point.site, point.device)
        rationale = alarm.rationale
        return AlarmFacts(
            event_id=message.message_id,
            tenant=point.tenant,
            site=point.site,
            alarm_id=point.alarm_id,
            device=point.device,
            rule=point.rule,
            kind=device.measures[0].kind if device is not None else "",
            zone=device.zone if device is not None else "",
            condition=str(alarm.condition),
            alarm_class=str(alarm.alarm_class),
            priority=str(alarm.priority),
            state=str(transition.new),
            active=transition.active,
            at=transition.at,
            raised=transition.old in _QUIET and transition.new in _ALARMED and transition.active,
            position=Position(device.position.lat, device.position.lon) if device is not None else None,
            rationale=" / ".join(t for t in (rationale.cause.en, rationale.action.en) if t),
            actor=transition.action.person if transition.action is not None else "",
            snapshot=alarm.snapshot,
        )


def site_places(site: Site) -> SitePlaces:
    """Where a site's zones are: each zone's centroid (the mean of its outline's corners, which for
    the convex outlines of plant units is inside them), and the site's location."""
    zones = {}
    for zone in site.zones:
        if zone.polygon:
            lat = sum(p[0] for p in zone.polygon) / len(zone.polygon)
            lon = sum(p[1] for p in zone.polygon) / len(zone.polygon)
            zones[zone.id] = Position(round(lat, 6), round(lon, 6))
    return SitePlaces(Position(site.location.lat, site.location.lon), zones)


def places_of(sites: SiteRegistry, site_id: str) -> SitePlaces | None:
    """The site's places; None for a site the registry does not hold (its events cannot be
    placed, so they are refused rather than shared at a made-up location)."""
    site = sites.site(site_id)
    return None if site is None else site_places(site)
