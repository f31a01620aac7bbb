"""What the store's routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

READ_OBSERVATIONS = Permission(
    "observations.read", frozenset({"viewer", "responder", "operator", "admin"}), "read observations"
)
