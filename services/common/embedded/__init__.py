"""nats-server and PostgreSQL run from their wheels as children of the hub, in one data dir."""

from __future__ import annotations

from .datadir import DataDirBusy, DataDirLock, default_data_dir
from .nats_server import EmbeddedNats
from .postgres_server import EmbeddedPostgres

__all__ = ["DataDirBusy", "DataDirLock", "EmbeddedNats", "EmbeddedPostgres", "default_data_dir"]
