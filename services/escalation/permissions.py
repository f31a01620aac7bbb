"""What the escalation routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

# Where the tenant's incidents go, and with which secrets: the tenant's administrators only.
MANAGE_ENDPOINTS = Permission(
    "escalation.endpoints",
    frozenset({"admin"}),
    "manage notification endpoints: create, change, rotate their secrets, delete",
)

# What was sent where, and sending a dead delivery again.
MANAGE_DELIVERIES = Permission(
    "escalation.deliveries",
    frozenset({"admin"}),
    "list deliveries and their attempts, and redeliver dead ones",
)

# Who is paged, in which order, how soon: the tenant's administrators only.
MANAGE_POLICIES = Permission(
    "escalation.policies",
    frozenset({"admin"}),
    "manage escalation policies: their steps, waits, repeats and acknowledgement deadlines",
)

# When a site's non-safety notifications are muted: the tenant's administrators (a key limited to
# sites, for those sites only).
MANAGE_MAINTENANCE = Permission(
    "escalation.maintenance",
    frozenset({"admin"}),
    "manage maintenance windows: when a site's or zone's non-safety notifications are muted",
)
