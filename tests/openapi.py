"""openapi.yaml in tests: the parsed document, and checking an answer against one of its schemas."""

from __future__ import annotations

import functools
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import REPO

DOCUMENT_URI = "urn:safetyhub:openapi"


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "openapi.yaml").read_text(encoding="utf-8"))
    return loaded


def assert_matches(schema: str, value: Any) -> None:
    """Fails with the first mismatch when `value` does not fit `#/components/schemas/<schema>`."""
    # OpenAPI 3.1 schemas are JSON Schema 2020-12, referring into the whole document.
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document(), default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{schema}"}, registry=registry
    )
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    assert not errors, f"{schema}: {errors[0].message} at {list(errors[0].absolute_path)}"
