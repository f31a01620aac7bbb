"""What the alarm read routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

READ_ALARMS = Permission(
    "alarms.read",
    frozenset({"viewer", "responder", "operator", "admin"}),
    "read alarms, their transitions and the alarm KPIs",
)
