"""The API description is served without a key: as JSON, and as a page whose files the hub serves."""

from __future__ import annotations

import re

import msgspec
import pytest

from tests.conftest import RunningHub
from tests.openapi import document

pytestmark = pytest.mark.integration


async def test_openapi_json_is_the_repositorys_description(running_hub: RunningHub) -> None:
    async with running_hub.session.get(running_hub.url + "/openapi.json") as resp:  # no key
        assert resp.status == 200
        assert resp.content_type == "application/json"
        served = msgspec.json.decode(await resp.read())
    assert served == document()
    assert "/v1/sites" in served["paths"] and "/v1/devices/{device}/latest" in served["paths"]


async def test_the_docs_page_and_its_files_come_from_the_hub(running_hub: RunningHub) -> None:
    async with running_hub.session.get(running_hub.url + "/docs") as resp:  # no key
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()

    assert 'url: "/openapi.json"' in page
    # Nothing is loaded from elsewhere: every script and style is a path on this hub.
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert references and all(ref.startswith("/docs/") for ref in references), references
    assert "//" not in "".join(references)
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for ref in references:
        async with running_hub.session.get(running_hub.url + ref) as resp:
            body = await resp.read()
            assert resp.status == 200, ref
            assert resp.content_type == expected[ref[ref.rindex(".") :]], ref
            assert len(body) > 100, ref
    async with running_hub.session.get(running_hub.url + "/docs/swagger-ui-bundle.js") as resp:
        assert b"SwaggerUIBundle" in await resp.read()


async def test_only_the_pages_files_are_public(running_hub: RunningHub) -> None:
    # The bundle's directory also holds a sample page and source maps: not served.
    for path in ("/docs/index.html", "/docs/swagger-initializer.js", "/docs/swagger-ui.js.map"):
        async with running_hub.session.get(running_hub.url + path) as resp:
            assert resp.status == 404, path
    async with running_hub.session.get(running_hub.url + "/v1/observations") as resp:
        assert resp.status == 401


async def test_every_route_of_the_hub_is_described(running_hub: RunningHub) -> None:
    runner = running_hub.hub._runner  # the app as `up` serves it, every service included
    assert runner is not None
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in runner.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {(method, path) for path, item in document()["paths"].items() for method in item}
    # The page's own script and style are not API operations.
    served = {(m, p) for m, p in served if not p.startswith("/docs/")}
    assert served == described
