"""The strict YAML loader: errors name the file, line and key an operator has to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from services.common.config import (
    LineMap,
    load_yaml_file,
    load_yaml_file_with_lines,
    load_yaml_text,
    load_yaml_text_with_lines,
)
from services.common.errors import ConfigError


class Point(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: float


class Item(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    id: str
    kind: Literal["plant", "park"] = "plant"
    at: Point | None = None
    limits: dict[str, int] = {}


class Doc(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    version: int
    items: tuple[Item, ...] = ()


DOC = """\
version: 1
items:
  - id: a
    kind: park
    at:
      lat: 35.5
      lon: 129.3
  - id: b
    limits: {warn: 10, trip: 20}
"""


def load_error(text: str, type_: type[object] = Doc) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, type_, filename="site.yaml")
    return info.value


def test_valid_text_decodes_into_structs() -> None:
    doc = load_yaml_text(DOC, Doc, filename="site.yaml")
    assert doc == Doc(
        version=1,
        items=(
            Item(id="a", kind="park", at=Point(lat=35.5, lon=129.3)),
            Item(id="b", limits={"warn": 10, "trip": 20}),
        ),
    )


def test_unknown_key_names_file_line_and_key() -> None:
    err = load_error(DOC.replace("    kind: park\n", "    kind: park\n    unti: 3\n"))
    assert (err.file, err.line, err.key) == ("site.yaml", 5, "items[0].unti")
    assert str(err) == "site.yaml:5: items[0].unti: Object contains unknown field `unti`"


def test_unknown_key_at_top_level() -> None:
    err = load_error("version: 1\nverison: 2\n")
    assert (err.line, err.key) == (2, "verison")


def test_wrong_type_points_at_the_value() -> None:
    err = load_error(DOC.replace("lat: 35.5", 'lat: "north"'))
    assert (err.line, err.key, err.message) == (6, "items[0].at.lat", "Expected `float`, got `str`")


def test_out_of_range_number() -> None:
    err = load_error(DOC.replace("lat: 35.5", "lat: 135.5"))
    assert (err.line, err.key, err.message) == (6, "items[0].at.lat", "Expected `float` <= 90.0")


def test_bad_enum_value() -> None:
    err = load_error(DOC.replace("kind: park", "kind: factory"))
    assert (err.line, err.key, err.message) == (4, "items[0].kind", "Invalid enum value 'factory'")


def test_missing_required_field_points_at_the_parent_mapping() -> None:
    err = load_error(DOC.replace("  - id: b\n    limits", "  - limits"))
    assert (err.line, err.key) == (8, "items[1].id")
    assert err.message == "Object missing required field `id`"


def test_missing_required_field_at_top_level() -> None:
    err = load_error("items: []\n")
    assert (err.line, err.key) == (1, "version")


def test_wrong_type_of_a_mapping_value_points_at_the_mapping() -> None:
    # msgspec says `limits[...]` without naming the key; the mapping's line is the best we know.
    err = load_error(DOC.replace("trip: 20", "trip: high"))
    assert (err.line, err.key) == (9, "items[1].limits[...]")


def test_unquoted_number_where_a_string_is_expected_gets_a_hint() -> None:
    err = load_error(DOC.replace("id: b", "id: 101"))
    assert (err.line, err.key) == (8, "items[1].id")
    assert err.message == "Expected `str`, got `int` (quote the value to keep it a string)"


def test_whole_document_of_the_wrong_shape() -> None:
    err = load_error("- 1\n- 2\n")
    assert (err.line, err.key, err.message) == (1, "", "Expected `object`, got `array`")
    assert str(err) == "site.yaml:1: Expected `object`, got `array`"


def test_duplicate_key_is_rejected_with_both_lines() -> None:
    err = load_error(DOC.replace("      lon: 129.3\n", "      lon: 129.3\n      lat: 36.0\n"))
    assert (err.line, err.key) == (8, "items[0].at.lat")
    assert err.message == "duplicate key `lat` (first at line 6)"


def test_duplicate_top_level_key() -> None:
    err = load_error("version: 1\nitems: []\nversion: 2\n")
    assert (err.line, err.key) == (3, "version")


def test_keys_stay_text_even_if_yaml_1_1_reads_them_as_booleans() -> None:
    # `on` would be True under YAML 1.1; as a key it must stay the word the operator wrote.
    doc = load_yaml_text("version: 1\nitems: [{id: x, limits: {on: 1, off: 0}}]\n", Doc, filename="f")
    assert doc.items[0].limits == {"on": 1, "off": 0}


def test_yaml_syntax_error_reports_its_line() -> None:
    err = load_error("version: 1\nitems:\n  - id: a\n    kind: [park\n  - id: b\n")
    assert err.file == "site.yaml"
    assert (err.line, err.key) == (5, "")
    assert err.message == "while parsing a flow sequence at line 4, expected ',' or ']', but got ':'"


def test_control_character_reports_its_line() -> None:
    err = load_error("version: 1\nitems: [\x01]\n")
    assert (err.line, err.message) == (2, "unacceptable character #x0001: special characters are not allowed")


def test_bad_indentation_reports_its_line() -> None:
    err = load_error("version: 1\nitems:\n  - id: a\n   kind: park\n")
    assert err.line == 4


def test_unknown_tag_is_rejected() -> None:
    err = load_error("version: !secret abc\n")
    assert err.line == 1
    assert "!secret" in err.message


def test_tagged_collection_is_rejected() -> None:
    err = load_error("version: 1\nitems: !!set {a, b}\n")
    assert (err.line, err.key) == (2, "items")


def test_merge_keys_are_rejected() -> None:
    text = "base: &b {id: a}\nversion: 1\nitems:\n  - <<: *b\n    kind: park\n"
    err = load_error(text)
    assert (err.line, err.key, err.message) == (4, "items[0]", "merge keys (<<) are not supported")


def test_plain_aliases_are_allowed() -> None:
    doc = load_yaml_text("version: 1\nitems:\n  - &a {id: a}\n  - *a\n", Doc, filename="f")
    assert doc.items == (Item(id="a"), Item(id="a"))


def test_recursive_alias_is_rejected() -> None:
    err = load_error("version: 1\nitems: &x [*x]\n")
    assert (err.line, err.key) == (2, "items[0]")


def test_multiple_documents_are_rejected() -> None:
    err = load_error("version: 1\n---\nversion: 2\n")
    assert err.line == 2


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    err = load_error(text)
    assert (err.line, err.key, err.message) == (None, "", "file is empty")
    assert str(err) == "site.yaml: file is empty"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path, Doc)
    assert (info.value.file, info.value.line) == (str(path), None)
    assert info.value.message.startswith("cannot read file")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nitems: [{id: caf\xe9}]\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path, Doc)
    assert info.value.line is None
    assert info.value.message.startswith("not UTF-8 text")


def test_file_errors_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("version: 1\nitems:\n  - {id: a, unti: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path, Doc)
    assert str(info.value) == f"{path}:3: items[0].unti: Object contains unknown field `unti`"


def test_load_file_returns_the_line_map(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(DOC, encoding="utf-8")
    doc, lines = load_yaml_file_with_lines(path, Doc)
    assert doc.items[1].id == "b"
    assert lines.line_of(("items", 1, "limits")) == 9


def line_map() -> LineMap:
    return load_yaml_text_with_lines(DOC, Doc, filename="f")[1]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("version",), 1),
        (("items",), 2),
        (("items", 0), 3),
        (("items", 0, "at"), 5),  # a key's own line, though its mapping starts below it
        (("items", 0, "at", "lon"), 7),
        (("items", 1, "limits", "trip"), 9),
        # Unknown paths fall back to the nearest ancestor the file has.
        (("items", 1, "kind"), 8),
        (("items", 7, "id"), 2),
        (("items", "x"), 2),
        (("nothing",), 1),
    ],
)
def test_line_map(path: tuple[str | int, ...], line: int) -> None:
    assert line_map().line_of(path) == line
