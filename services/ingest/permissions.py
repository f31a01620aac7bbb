"""What ingest's routes let a role do."""

from __future__ import annotations

from services.common.auth.principal import Permission

POST_OBSERVATIONS = Permission("observations.post", frozenset({"gateway", "admin"}), "post observations")
