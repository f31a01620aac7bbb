"""The API description: `/openapi.json` and a human-readable page at `/docs`, both without a key.

The document is the repository's `openapi.yaml`, shipped in this package (a test keeps the copy
equal), so an installed hub serves it as well as a checkout. It is read and converted once when
the app starts, in a thread. The page is Swagger UI from the `swagger-ui-bundle-v2` wheel; its
script and style are served by the hub itself, so the page works without internet access.
"""

from __future__ import annotations

import asyncio
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import swagger_ui_bundle
import yaml
from aiohttp import web

DOCUMENT_PATH = "/openapi.json"
PAGE_PATH = "/docs"
ASSET_PREFIX = "/docs/"
# The few files the page needs, out of the bundle's directory (which also holds source maps and
# a sample page pointing at a demo API elsewhere).
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

_DOCUMENT: web.AppKey[bytes] = web.AppKey("openapi_document", bytes)

# `validatorUrl: null`: Swagger UI would otherwise offer to send the document to an online
# validator. Authorisation is not persisted: a key typed here stays in this tab's memory.
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>safetyhub API</title>
  <link rel="stylesheet" href="{ASSET_PREFIX}swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSET_PREFIX}favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSET_PREFIX}swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{DOCUMENT_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      persistAuthorization: false
    }});
  </script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    return Path(swagger_ui_bundle.swagger_ui_path)


@functools.cache
def load_document() -> bytes:
    """The shipped YAML description as compact JSON (blocking: run it in a thread).

    Read once per process: the packaged file does not change while it runs, and parsing its
    4,000 lines costs a noticeable part of a hub's start (libyaml's parser where PyYAML has it).
    """
    text = resources.files("services.hub").joinpath("openapi.yaml").read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: Any = yaml.load(text, Loader=loader)
    return msgspec.json.encode(document)


def add_api_docs(app: web.Application) -> None:
    assets = swagger_ui_dir()

    async def load(app: web.Application) -> None:
        app[_DOCUMENT] = await asyncio.to_thread(load_document)

    async def document(request: web.Request) -> web.Response:
        return web.Response(body=request.app[_DOCUMENT], content_type="application/json")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    def asset(name: str, content_type: str) -> web.RouteDef:
        async def serve(request: web.Request) -> web.FileResponse:
            # Unversioned paths, so revalidate: the file is sent again only when it changed.
            return web.FileResponse(
                assets / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
            )

        return web.get(ASSET_PREFIX + name, serve)

    app.on_startup.append(load)
    app.router.add_routes(
        [
            web.get(DOCUMENT_PATH, document),
            web.get(PAGE_PATH, page),
            *(asset(name, content_type) for name, content_type in ASSETS.items()),
        ]
    )
