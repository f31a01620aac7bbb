"""aiohttp middlewares: errors as problem+json, and authentication by API key or person's token."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from services.common.auth.keys import PREFIX as KEY_PREFIX
from services.common.auth.principal import Principal
from services.common.auth.tokens import TokenRejected, TokenVerifier, looks_like_jwt
from services.common.auth.verifier import KeyVerifier
from services.common.errors import UnavailableError
from services.common.http.problem import Problem, problem_response
from services.common.logging import get_logger

log = get_logger(__name__)

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
MAX_BODY_BYTES: web.AppKey[int] = web.AppKey("max_body_bytes", int)
# Paths under these carry a credential in the path (a signed link): logged cut at the prefix.
CREDENTIAL_PREFIXES: web.AppKey[tuple[str, ...]] = web.AppKey("credential_prefixes", tuple)


def loggable_path(request: web.Request) -> str:
    """The request's path for a log line: never a credential the path carries, at most 200 chars."""
    path = request.path
    for prefix in request.app.get(CREDENTIAL_PREFIXES, ()):
        if path.startswith(prefix):
            return prefix + "…"
    return path[:200]


_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
# The key id of a presented key, `shk_<key id>_<secret>`; only the id is ever logged.
_CLAIMED_KEY = re.compile(r"^\s*bearer\s+shk_([0-9a-f]{1,32})_", re.IGNORECASE)


class RefusalLog:
    """Logs refused requests so a misconfigured gateway can be traced from the log, without a
    flood: one line per key (or address) and reason every `interval` seconds, counting the
    refusals in between (`suppressed`)."""

    def __init__(
        self, *, interval: float = 10.0, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        # (who, reason) -> (when last logged, refusals not logged since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def refused(self, event: str, *, who: str, reason: str, **fields: object) -> bool:
        """Log `event` unless this (who, reason) was logged within the interval; True if logged."""
        now = self._clock()
        key = (who, reason)
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._seen) >= self._max_keys:
            # Many distinct callers (a scan): forget the oldest rather than grow without bound.
            for stale in list(self._seen)[: self._max_keys // 2]:
                del self._seen[stale]
        self._seen[key] = (now, 0)
        log.warning(event, who=who, reason=reason, suppressed=last[1] if last else 0, **fields)
        return True


REFUSALS = RefusalLog()


def caller_of(request: web.Request) -> str:
    """Who made the request, for the log: the key id (verified, or as presented), else the address."""
    principal = request.get(PRINCIPAL)
    if principal is not None:
        # A person's key_id reads `person:<subject>` already.
        return principal.key_id if principal.kind == "person" else f"key:{principal.key_id}"
    claimed = _CLAIMED_KEY.match(request.headers.get("Authorization", ""))
    if claimed:
        return f"key:{claimed.group(1)}"
    return f"addr:{request.remote or 'unknown'}"


def _log_refusal(request: web.Request, problem: Problem) -> None:
    errors = problem.extensions.get("errors")
    REFUSALS.refused(
        "request_refused",
        who=caller_of(request),
        reason=problem.slug,
        status=problem.status,
        method=request.method,
        path=loggable_path(request),
        detail=problem.detail[:300],
        errors=len(errors) if isinstance(errors, list) else 0,
        **{k: v for k, v in problem.extensions.items() if k in ("items", "max_items")},
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json; a bug is a logged 500, never a stack trace to the client."""
    try:
        return await handler(request)
    except Problem as problem:
        _log_refusal(request, problem)
        return problem_response(problem, request.path)
    except UnavailableError as err:
        unavailable = Problem(503, "Service unavailable", str(err), headers={"Retry-After": "2"})
        _log_refusal(request, unavailable)
        return problem_response(unavailable, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        title = _HTTP_TITLES.get(exc.status, exc.reason)
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else title
        if exc.status == 413:
            detail = f"The request body exceeds the limit of {request.app[MAX_BODY_BYTES]} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        refused = Problem(exc.status, title, detail, headers=headers)
        _log_refusal(request, refused)
        return problem_response(refused, request.path)
    except Exception:
        log.exception("unhandled_error", path=loggable_path(request), method=request.method)
        return problem_response(
            Problem(500, "Internal error", "The hub failed to handle this request; it is logged."),
            request.path,
        )


def auth_middleware(
    verifier: KeyVerifier,
    *,
    public_paths: frozenset[str],
    public_prefixes: tuple[str, ...] = (),
    tokens: TokenVerifier | None = None,
) -> Middleware:
    """Requires a valid key or person's token everywhere but on `public_paths` and under
    `public_prefixes` (the hub's and its services' declared paths: probes, metrics, the API page).

    An API key reads `shk_...`; anything else of three dot-separated parts is a JWT, checked by
    `tokens`. Both yield a `Principal`.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public_paths or request.path.startswith(public_prefixes):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "Unauthorized",
                "Send an API key or a token as 'Authorization: Bearer <key or token>'",
                headers={"WWW-Authenticate": 'Bearer realm="safetyhub"'},
            )
        token = token.strip()
        if not token.startswith(f"{KEY_PREFIX}_") and looks_like_jwt(token):
            request[PRINCIPAL] = await _person(tokens, token)
            return await handler(request)
        principal = await verifier.verify(token)
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


async def _person(tokens: TokenVerifier | None, token: str) -> Principal:
    if tokens is None or not tokens.configured:
        raise _invalid_token("This hub accepts no tokens of people: none is configured (auth.jwt)")
    try:
        return await tokens.verify(token)
    except TokenRejected as err:
        raise _invalid_token(str(err)) from None


def _invalid_token(detail: str) -> Problem:
    # RFC 6750: the error is told in WWW-Authenticate; the detail says which check failed.
    return Problem(
        401,
        "Unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="safetyhub", error="invalid_token"'},
    )


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]
