"""The maintenance-ending reminder as a webhook: a CloudEvents 1.0 structured event, signed and
delivered as incident notifications are.

    {"specversion": "1.0", "id": <webhook-id>, "source": "/escalation/<tenant>/<site>",
     "type": "org.safetyhub.maintenance.ending.v1", "time": ..., "subject": <window id>,
     "datacontenttype": "application/json",
     "data": {"window": <id>, "site": ..., "zone": ... | null, "reason": ..., "timezone": ...,
              "endsAt": ...}}
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.escalation.domain.maintenance import Reminder
from services.incidents.read_json import rfc3339

ENDING_TYPE = "org.safetyhub.maintenance.ending.v1"
ENDING_CHANGE = "maintenance.ending"


def ending_event(tenant: str, reminder: Reminder, webhook_id: str, at: datetime) -> bytes:
    window = reminder.window
    return msgspec.json.encode(
        {
            "specversion": "1.0",
            "id": webhook_id,
            "source": f"/escalation/{tenant}/{window.site}",
            "type": ENDING_TYPE,
            "time": rfc3339(at),
            "subject": window.id,
            "datacontenttype": "application/json",
            "data": {
                "window": window.id,
                "site": window.site,
                "zone": window.zone,
                "reason": window.reason,
                "timezone": window.timezone,
                "endsAt": rfc3339(reminder.expires),
            },
        }
    )
