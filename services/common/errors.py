"""The root of every error safetyhub raises on purpose.

Each service derives its own small hierarchy from `SafetyhubError`; adapters wrap library errors
(`raise ... from err`) so callers handle one vocabulary. The HTTP layer maps them to problem+json.
"""

from __future__ import annotations


class SafetyhubError(Exception):
    """Base of all deliberate safetyhub errors."""


class ConfigError(SafetyhubError):
    """A configuration file is invalid. Start-up stops and the message names file, line and key."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class UnavailableError(SafetyhubError):
    """A server the hub depends on (NATS, PostgreSQL) cannot be reached right now; retry later."""


class EmbeddedServerError(SafetyhubError):
    """An embedded server (nats-server, PostgreSQL) could not be prepared, started or stopped."""
