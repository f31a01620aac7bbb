"""nats-server and PostgreSQL run from their wheels as children of the hub, in one data dir.

`Supervised` restarts one that dies.
"""

from __future__ import annotations

from .datadir import DataDirBusy, DataDirLock, default_data_dir
from .nats_server import EmbeddedNats
from .postgres_server import EmbeddedPostgres
from .supervisor import Backoff, Supervised

__all__ = [
    "Backoff",
    "DataDirBusy",
    "DataDirLock",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "Supervised",
    "default_data_dir",
]
