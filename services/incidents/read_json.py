"""Incidents as the HTTP API shows them: flat JSON, times in RFC 3339 UTC, texts in the caller's
language (Accept-Language: Korean or English; without one, the site's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.incidents.domain.incident import Incident, Member
from services.incidents.domain.model import Text
from services.incidents.domain.timeline import title
from services.incidents.repository import AttachmentRow

KO, EN = "ko", "en"
# Sites in these zones speak Korean first; any other site, English.
_KOREAN_ZONES = frozenset({"Asia/Seoul"})


def language(accept: str | None, site_timezone: str | None) -> str:
    """The first of Korean or English the caller accepts (RFC 9110 weights), else the site's."""
    if accept:
        ranked = []
        for position, part in enumerate(accept.split(",")):
            tag, _, params = part.strip().partition(";")
            weight = 1.0
            params = params.strip()
            if params.startswith("q="):
                try:
                    weight = float(params[2:])
                except ValueError:
                    weight = 0.0
            primary = tag.strip().lower().split("-")[0]
            if primary in (KO, EN) and weight > 0:
                ranked.append((-weight, position, primary))
        if ranked:
            return min(ranked)[2]
    return KO if site_timezone in _KOREAN_ZONES else EN


def _text(text: Text, lang: str) -> str:
    return text.ko if lang == KO else text.en


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def etag(version: int) -> str:
    return f'"{version}"'


def incident_json(incident: Incident, lang: str, distance_m: float | None = None) -> dict[str, Any]:
    position = incident.position
    resolution = (
        {"code": incident.resolution_code, "note": incident.resolution_note}
        if incident.resolution_code
        else None
    )
    body: dict[str, Any] = {
        "id": incident.id,
        "site": incident.site,
        "type": str(incident.type),
        "status": str(incident.status),
        "severity": str(incident.severity),
        "urgency": str(incident.urgency),
        "certainty": str(incident.certainty),
        "confirmed": incident.confirmed,
        "title": _text(title(incident.type, incident.zones, incident.site), lang),
        "language": lang,
        "openedAt": rfc3339(incident.opened_at),
        "updatedAt": rfc3339(incident.updated_at),
        "zones": incident.zones,
        "position": {"lat": position[0], "lon": position[1]} if position else None,
        "assignee": incident.assignee or None,
        "alarms": len(incident.members),
        "activeAlarms": sum(m.active for m in incident.members),
        "counts": dict(incident.counts),
        "resolution": resolution,
        "version": incident.version,
    }
    if distance_m is not None:
        body["distanceM"] = round(distance_m, 1)
    return body


def member_json(member: Member, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "alarmId": member.alarm_id,
        "device": member.device,
        "rule": member.rule,
        "kind": member.kind,
        "zone": member.zone,
        "alarmClass": str(member.alarm_class),
        "priority": str(member.priority),
        "joinedAt": rfc3339(member.at),
        "active": member.active,
        "returnedAt": rfc3339(member.returned_at),
        "confirmed": member.confirmed,
        # The tenant's reference (GET it with a key of the tenant); null when none.
        "snapshot": member.snapshot or None,
    }


def entry_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": rfc3339(row["at"]),
        "actor": row["actor"],
        "change": row["change"],
        "what": row["what"],
        "note": row["note"] or None,
        "alarmId": row["alarm_id"],
        "status": row["status"],
    }


def attachment_json(row: AttachmentRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "incidentId": row.incident_id,
        "contentType": row.content_type,
        "size": row.size,
        "width": row.width,
        "height": row.height,
        "sha256": row.sha256,
        "filename": row.filename or None,
        "addedBy": row.added_by,
        "addedAt": rfc3339(row.added_at),
        "href": f"/v1/incidents/{row.incident_id}/attachments/{row.id}",
    }


def detail_json(
    incident: Incident,
    lang: str,
    timeline: list[asyncpg.Record],
    attachments: list[AttachmentRow],
) -> dict[str, Any]:
    """The incident with its members in first-out order, what to do, its timeline and photos."""
    return {
        "incident": incident_json(incident, lang),
        "members": [member_json(m, rank) for rank, m in enumerate(incident.first_out(), start=1)],
        "actions": [_text(a, lang) for a in incident.actions],
        "timeline": [entry_json(row) for row in timeline],
        "attachments": [attachment_json(row) for row in attachments],
    }
