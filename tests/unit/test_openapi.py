"""openapi.yaml is valid OpenAPI 3.1, and the copy the package ships (served at /openapi.json) is it."""

from __future__ import annotations

from openapi_spec_validator import validate

from services.hub.apidocs import load_document
from tests.conftest import REPO
from tests.openapi import assert_matches, document


def test_the_description_is_valid_openapi_3_1() -> None:
    validate(document())  # raises with the path of the first error
    assert document()["openapi"].startswith("3.1")


def test_the_package_ships_the_repository_description() -> None:
    shipped = REPO / "services" / "hub" / "openapi.yaml"
    assert shipped.read_bytes() == (REPO / "openapi.yaml").read_bytes(), (
        "services/hub/openapi.yaml must equal openapi.yaml (the hub serves the packaged copy): "
        "cp openapi.yaml services/hub/openapi.yaml"
    )


def test_the_document_loads_as_json_from_the_package() -> None:
    import msgspec

    assert msgspec.json.decode(load_document()) == document()


def test_examples_fit_their_schemas() -> None:
    # The schemas describe answers the integration tests check against them; their own examples
    # must fit too, or a reader of /docs is misled.
    schemas = document()["components"]["schemas"]
    for name in ("LatestObservations", "ObservationPage"):
        assert_matches(name, schemas[name]["example"])
