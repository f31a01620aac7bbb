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


def test_no_key_is_given_twice_in_the_api_descriptions() -> None:
    # YAML keeps the last of two equal keys silently: a schema or response added twice by two
    # changes would lose one of them without any validator noticing.
    import yaml

    def refuse_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[object, object]:
        keys = [loader.construct_object(key) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        assert not repeated, f"line {node.start_mark.line + 1}: keys given twice: {repeated}"
        return yaml.SafeLoader.construct_mapping(loader, node)

    class Strict(yaml.SafeLoader):
        pass

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, refuse_duplicates)
    for name in ("openapi.yaml", "asyncapi.yaml"):
        with (REPO / name).open(encoding="utf-8") as f:
            assert yaml.load(f, Strict) is not None  # a SafeLoader: no objects built
