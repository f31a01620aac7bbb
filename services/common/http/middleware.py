"""aiohttp middlewares: errors as problem+json, and API-key authentication."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from services.common.auth.principal import Principal
from services.common.auth.verifier import KeyVerifier
from services.common.errors import UnavailableError
from services.common.http.problem import Problem, problem_response
from services.common.logging import get_logger

log = get_logger(__name__)

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
MAX_BODY_BYTES: web.AppKey[int] = web.AppKey("max_body_bytes", int)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/docs/",)  # the API page's script and style
_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json; a bug is a logged 500, never a stack trace to the client."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request.path)
    except UnavailableError as err:
        return problem_response(
            Problem(503, "Service unavailable", str(err), headers={"Retry-After": "2"}), request.path
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        title = _HTTP_TITLES.get(exc.status, exc.reason)
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else title
        if exc.status == 413:
            detail = f"The request body exceeds the limit of {request.app[MAX_BODY_BYTES]} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problem_response(Problem(exc.status, title, detail, headers=headers), request.path)
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return problem_response(
            Problem(500, "Internal error", "The hub failed to handle this request; it is logged."),
            request.path,
        )


def auth_middleware(verifier: KeyVerifier) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "Unauthorized",
                "Send an API key as 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="safetyhub"'},
            )
        principal = await verifier.verify(token.strip())
        if principal is None:
            raise Problem(
                401,
                "Unauthorized",
                "The API key is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer realm="safetyhub", error="invalid_token"'},
            )
        request[PRINCIPAL] = principal
        return await handler(request)

    return authenticate


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]
