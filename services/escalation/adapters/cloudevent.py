"""The JSON rendering of a notification: a CloudEvents 1.0 structured event
(`application/cloudevents+json`) whose `data` is the incident as the change left it.

    {"specversion": "1.0", "id": <webhook-id>, "source": "/escalation/<tenant>/<site>",
     "type": "org.safetyhub.incident.opened.v1", "time": ..., "subject": <incident id>,
     "datacontenttype": "application/json", "data": {...incident...}}

`id` is the delivery's webhook-id, so the event and the webhook carry one identity. `data.ackUrl`:
the notification's signed one-time acknowledgement link, while the incident awaits acknowledgement
and the hub has a public URL (services/escalation/ack_links.py); absent otherwise.
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.common.contracts import incident_change_type
from services.escalation.adapters.incident_change import ChangeMessage
from services.incidents.read_json import rfc3339

CONTENT_TYPE = "application/cloudevents+json"


def cloudevent(
    change: ChangeMessage,
    webhook_id: str,
    lang: str,
    extra: dict[str, Any] | None = None,
    *,
    ack_url: str | None = None,
) -> bytes:
    data = change.incident_json(lang)
    if ack_url:
        data["ackUrl"] = ack_url
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": webhook_id,
        "source": f"/escalation/{change.tenant}/{change.site}",
        "type": incident_change_type(change.change),
        "time": rfc3339(change.at),
        "subject": change.incident_id,
        "datacontenttype": "application/json",
        "data": data,
    }
    if change.correlation_id:
        # A CloudEvents extension attribute: the causal chain from the first reading.
        event["correlationid"] = change.correlation_id
    if extra:
        event.update(extra)
    return msgspec.json.encode(event)
