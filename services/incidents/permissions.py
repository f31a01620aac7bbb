"""What the incident routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

READ_INCIDENTS = Permission(
    "incidents.read",
    frozenset({"viewer", "responder", "operator", "admin"}),
    "read incidents, their timelines, members and actions",
)

# Responders work incidents in the field: take, dispatch, resolve, comment.
WORK_INCIDENTS = Permission(
    "incidents.work",
    frozenset({"responder", "operator", "admin"}),
    "acknowledge, dispatch, resolve, reopen and comment on incidents",
)

# Handing an incident to someone else is the control room's call.
ASSIGN_INCIDENTS = Permission(
    "incidents.assign",
    frozenset({"operator", "admin"}),
    "assign incidents to a responder or team",
)
