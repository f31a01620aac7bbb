"""What the feed's routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

# What leaves for the city is the company's decision: its administrators'.
SET_SHARING = Permission(
    "feed.policy",
    frozenset({"admin"}),
    "set (and read) the sharing policies of the tenant's sites",
)

READ_EXPORTS = Permission(
    "feed.exports",
    frozenset({"admin"}),
    "list what the city feed exported, with the policy version that allowed it",
)
