"""Units of work and the transactional outbox: state and outgoing messages committed together."""

from __future__ import annotations

from .relay import OutboxRelay, RelayConfig
from .unit_of_work import Outbox, OutboxError, UnitOfWork

__all__ = ["Outbox", "OutboxError", "OutboxRelay", "RelayConfig", "UnitOfWork"]
