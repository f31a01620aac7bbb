"""RFC 9457 problem details: the one shape of every HTTP error safetyhub returns."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.common.errors import SafetyhubError

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://safetyhub.dev/problems/"


class Problem(SafetyhubError):
    """Raise anywhere in a handler; the middleware renders it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extensions,
        }


def invalid_query(parameter: str, detail: str) -> Problem:
    """400 for a query or path parameter, naming it (the one shape every service's API uses)."""
    return Problem(
        400,
        "Invalid query",
        f"{parameter}: {detail}",
        slug="invalid-query",
        errors=[{"field": parameter, "detail": detail}],
    )


def problem_response(problem: Problem, instance: str) -> web.Response:
    return web.Response(
        status=problem.status,
        body=msgspec.json.encode(problem.body(instance)),
        content_type=CONTENT_TYPE,
        headers=problem.headers,
    )
