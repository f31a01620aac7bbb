"""One loaded config file seen by a validator: its name and line map, so that a check only has
to name the key path for its error to carry file, line and key."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.config.yaml_loader import LineMap, format_path
from services.common.errors import ConfigError
from services.common.validation import PathPart


class SourceFile:
    __slots__ = ("filename", "lines")

    def __init__(self, filename: str, lines: LineMap | None) -> None:
        self.filename = filename
        self.lines = lines

    def line(self, path: Sequence[PathPart]) -> int | None:
        return self.lines.line_of(path) if self.lines is not None else None

    def where(self, path: Sequence[PathPart], here: SourceFile) -> str:
        """How to point at `path` in this file from an error in `here`."""
        line = self.line(path)
        if self.filename == here.filename:
            return f"line {line}" if line is not None else "earlier in this file"
        return self.filename + (f":{line}" if line is not None else "")

    def error(self, path: Sequence[PathPart], message: str) -> ConfigError:
        return ConfigError(self.filename, self.line(path), format_path(path), message)
