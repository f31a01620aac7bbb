"""Strict YAML loading into msgspec Structs, with errors that name file, line and key.

PyYAML's `safe_load` forgets where each value came from and silently keeps the last of two
duplicate keys. We compose the node tree instead, build plain data from it ourselves (rejecting
duplicates), keep the tree as a `LineMap`, and let msgspec do the typing. Its error paths
(`$.sites[0].devices[3]`) are then mapped back to a line, so an operator reads
`sites/ulsan.yaml:42: sites[0].devices[3].unti: Object contains unknown field `unti``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml
import yaml.reader
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from services.common.errors import ConfigError
from services.common.validation import PathPart, locate

T = TypeVar("T")

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_NOT_A_STRING = re.compile(r"^Expected `str`, got `(bool|int|float|null)`$")


class LineMap:
    """Maps a decoded path such as ("sites", 0, "devices", 3, "kind") to its 1-based line.

    It walks the composed node tree on demand rather than flattening every path up front: lookups
    only happen while reporting an error, and the tree already is the index.
    """

    __slots__ = ("_root",)

    def __init__(self, root: Node) -> None:
        self._root = root

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """The line of `path`: a mapping key's own line, a list item's first line.

        If the exact path is not in the file (a missing field, a default value), this is the line
        of the nearest ancestor that is.
        """
        node = self._root
        line = node.start_mark.line + 1
        for part in path:
            found = _child(node, part)
            if found is None:
                break
            line, node = found
        return line


def _child(node: Node, part: PathPart) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode):
        wanted = str(part)
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == wanted:
                return key_node.start_mark.line + 1, value_node
        return None
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: Node = node.value[part]
        return item.start_mark.line + 1, item
    return None


def format_path(path: Sequence[PathPart]) -> str:
    """`("sites", 0, "id")` -> `sites[0].id`, the form keys take in error messages."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


class _Builder:
    """Builds plain Python data from a node tree, refusing what a strict config should not hold."""

    def __init__(self, filename: str) -> None:
        self._filename = filename
        self._constructor = SafeConstructor()
        # Nodes being built right now: an alias back into one of them is a cycle.
        self._active: set[int] = set()

    def build(self, node: Node, path: tuple[PathPart, ...]) -> Any:
        if isinstance(node, ScalarNode):
            # The safe constructors give YAML 1.1 scalars their usual meaning (ints, floats,
            # booleans, null, timestamps) and reject unknown tags.
            return self._constructor.construct_object(node)
        if id(node) in self._active:
            raise self._error(node, path, "an alias refers to the node that contains it")
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
        finally:
            self._active.discard(id(node))
        raise self._error(node, path, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: MappingNode, path: tuple[PathPart, ...]) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            raise self._error(node, path, f"unsupported tag {node.tag}")
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # Merging would make "which line set this value" ambiguous; repeat the values.
                raise self._error(key_node, path, "merge keys (<<) are not supported")
            if not isinstance(key_node, ScalarNode):
                raise self._error(key_node, path, "mapping keys must be plain scalars")
            # Keys stay the text as written (msgspec converts them with str_keys=True): YAML 1.1
            # would otherwise turn a key `on:` or `no:` into a boolean.
            key: str = key_node.value
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(
                    self._filename,
                    line,
                    format_path((*path, key)),
                    f"duplicate key `{key}` (first at line {first_line[key]})",
                )
            first_line[key] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _sequence(self, node: SequenceNode, path: tuple[PathPart, ...]) -> list[Any]:
        if node.tag != _SEQ_TAG:
            raise self._error(node, path, f"unsupported tag {node.tag}")
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]

    def _error(self, node: Node, path: Sequence[PathPart], message: str) -> ConfigError:
        return ConfigError(self._filename, node.start_mark.line + 1, format_path(path), message)


def _compose(text: str, filename: str) -> tuple[Any, LineMap]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise ConfigError(filename, None, "", "file is empty")
        data = _Builder(filename).build(root, ())
    except yaml.MarkedYAMLError as err:
        raise _syntax_error(err, filename) from err
    except yaml.reader.ReaderError as err:
        # Bad characters carry an offset into the text rather than a mark.
        line = text.count("\n", 0, err.position) + 1
        message = f"unacceptable character #x{err.character:04x}: {err.reason}"
        raise ConfigError(filename, line, "", message) from err
    except yaml.YAMLError as err:
        raise ConfigError(filename, None, "", str(err)) from err
    return data, LineMap(root)


def _syntax_error(err: yaml.MarkedYAMLError, filename: str) -> ConfigError:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark is not None else None
    parts: list[str] = []
    if err.context:
        # The context often started lines earlier (an unclosed bracket); say where.
        context_line = err.context_mark.line + 1 if err.context_mark is not None else None
        same = context_line is None or context_line == line
        parts.append(err.context if same else f"{err.context} at line {context_line}")
    if err.problem:
        parts.append(err.problem)
    return ConfigError(filename, line, "", ", ".join(parts) or "invalid YAML")


def _convert(data: Any, type_: type[T], lines: LineMap, filename: str) -> T:
    try:
        return msgspec.convert(data, type_, str_keys=True)
    except msgspec.ValidationError as err:
        raise _config_error(str(err), lines, filename) from err


def _config_error(text: str, lines: LineMap, filename: str) -> ConfigError:
    """Turns msgspec's `<problem> - at `$.a[0].b`` into a ConfigError pointing at that line."""
    located = locate(text)
    message, key = located.message, located.location
    if located.unknown is not None:
        # Point at the offending key itself and name it.
        return ConfigError(filename, lines.line_of(located.field), _child_key(key, located.unknown), message)
    if located.missing is not None:
        # The line stays the parent mapping's: the field is absent, so it has no line.
        key = _child_key(key, located.missing)
    elif _NOT_A_STRING.match(message):
        message += " (quote the value to keep it a string)"
    # Past a mapping's `[...]` msgspec does not say which key; the mapping's line will do.
    return ConfigError(filename, lines.line_of(located.path), key, message)


def _child_key(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def load_yaml_text_with_lines(text: str, type_: type[T], *, filename: str) -> tuple[T, LineMap]:
    """Parses `text` strictly into `type_`; `filename` only labels errors."""
    data, lines = _compose(text, filename)
    return _convert(data, type_, lines, filename), lines


def load_yaml_text(text: str, type_: type[T], *, filename: str) -> T:
    """Parses `text` strictly into `type_`; `filename` only labels errors."""
    return load_yaml_text_with_lines(text, type_, filename=filename)[0]


def load_yaml_file_with_lines(path: Path, type_: type[T]) -> tuple[T, LineMap]:
    """Reads and parses `path`; the LineMap lets later semantic checks report lines too."""
    filename = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(filename, None, "", f"cannot read file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(filename, None, "", f"not UTF-8 text: {err.reason}") from err
    return load_yaml_text_with_lines(text, type_, filename=filename)


def load_yaml_file(path: Path, type_: type[T]) -> T:
    """Reads and parses `path` strictly into `type_` (blocking; run at start-up or in a thread)."""
    return load_yaml_file_with_lines(path, type_)[0]
