"""What the alarm routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

READ_ALARMS = Permission(
    "alarms.read",
    frozenset({"viewer", "responder", "operator", "admin"}),
    "read alarms, their transitions and the alarm KPIs",
)

ACT_ON_ALARMS = Permission(
    "alarms.act",
    frozenset({"operator", "admin"}),
    "act on alarms: acknowledge, shelve, suppress, take out of service",
)
