"""`GET /v1/stream`: the incident and alarm changes the caller may see, as Server-Sent Events.

    GET /v1/stream?site=&type=        (Last-Event-ID: to resume)

Each event is one change: `event: incident.<change>` (incident.opened, incident.acknowledged...)
with the incident as the list shows it and the timeline entry, or `event: alarm.transition` with
the alarm as the alarm API shows it. `site` narrows to sites (each readable by the caller); `type`
to incident types and/or `alarm` (alarm changes). Comment lines every `stream_heartbeat_s`. A
client that falls `stream_queue_max` changes behind gets `event: stream.behind` and the end of the
stream, and comes back with its last id. The stream ends when the process starts to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

import asyncpg
from aiohttp import web
from nats.errors import Error as NatsError

from services.alarms.permissions import READ_ALARMS
from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.long_lived import long_lived
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.common.types import SLUG_PATTERN
from services.incidents.config import IncidentsConfig
from services.incidents.domain.model import IncidentType
from services.incidents.live_events import (
    ALARM_TYPE,
    ALARMS,
    INCIDENTS,
    BadEventId,
    LiveEvent,
    Position,
    heartbeat,
    notice,
)
from services.incidents.live_stream import Client, LiveFeed, Scope
from services.incidents.permissions import READ_INCIDENTS
from services.incidents.read_json import language

log = get_logger(__name__)

_PARAMS = frozenset({"site", "type"})
_TYPES = (*[t.value for t in IncidentType], ALARM_TYPE)
_SLUG = re.compile(SLUG_PATTERN)
# How often a client that keeps overflowing while it catches up is given another try before it
# is told it is behind (each try replays from the stream, not from memory).
CATCH_UP_TRIES = 3


class Behind(Exception):
    """The client fell too far behind the live feed."""


class StreamApi:
    def __init__(
        self,
        feed: LiveFeed,
        pool: asyncpg.Pool,
        sites: Callable[[], SiteRegistry],
        config: IncidentsConfig,
    ) -> None:
        self.feed = feed
        self._pool = pool
        self._sites = sites
        self.heartbeat_s = config.stream_heartbeat_s
        self.write_timeout_s = config.stream_write_timeout_s

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/stream", self.stream)

    def _scope(self, request: web.Request, principal: Principal) -> Scope:
        if not principal.may(READ_INCIDENTS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read incidents")
        unknown = sorted(set(request.query) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        readable = {
            s.id
            for s in self._sites().sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        }
        sites = readable
        if "site" in request.query:
            asked = set(request.query.getall("site"))
            for site in sorted(asked):
                if len(site) > 63 or not _SLUG.match(site):
                    raise invalid_query("site", "expected a site id: lower-case letters, digits and '-'")
                if site not in readable:
                    raise Problem(
                        403,
                        "Forbidden",
                        f"this key may not read site '{site}'",
                        errors=[{"field": "site", "detail": "not readable with this key"}],
                    )
            sites = asked
        types = None
        if "type" in request.query:
            types = frozenset(request.query.getall("type"))
            unknown_types = sorted(types - set(_TYPES))
            if unknown_types:
                raise invalid_query(
                    "type", f"unknown type '{unknown_types[0]}'; known are {', '.join(_TYPES)}"
                )
        streams = {INCIDENTS}
        if principal.may(READ_ALARMS):
            streams.add(ALARMS)
        return Scope(principal.tenant, frozenset(sites), types, frozenset(streams))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        scope = self._scope(request, principal)
        resume = None
        if "Last-Event-ID" in request.headers:
            try:
                resume = Position.parse(request.headers["Last-Event-ID"])
            except BadEventId as err:
                raise Problem(
                    400,
                    "Invalid header",
                    f"Last-Event-ID: {err}",
                    slug="invalid-header",
                    errors=[{"field": "Last-Event-ID", "detail": str(err)}],
                ) from err
        if not self.feed.running:
            raise UnavailableError("the live stream is not running yet")
        await self._audit(request, principal, scope, resume)

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
            }
        )
        accept = request.headers.get("Accept-Language")
        session = _Session(self, response, scope, accept)
        behind = False
        try:
            await response.prepare(request)
            async with long_lived(request):
                await session.run(resume)
        except Behind:
            behind = True
            log.info("live_stream_behind", tenant=scope.tenant, last_event_id=session.position.event_id())
        except (ConnectionResetError, TimeoutError):
            return response  # the client went away, or stopped reading
        except NatsError as err:
            # The bus failed under a replay: end the stream; the client resumes with its last id.
            log.warning("live_stream_bus_failed", tenant=scope.tenant, error=repr(err))
        finally:
            session.leave()
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            if behind:
                await session.write(notice("stream.behind", session.behind_body(), session.position))
            await response.write_eof()
        return response

    async def _audit(
        self, request: web.Request, principal: Principal, scope: Scope, resume: Position | None
    ) -> None:
        # Who watched which sites live, and from when: a review may ask who knew.
        detail = {
            "sites": sorted(scope.sites),
            "types": sorted(scope.types) if scope.types is not None else None,
            "resumed_from": resume.event_id() if resume is not None else None,
        }
        try:
            async with self._pool.acquire() as conn:
                await record(
                    conn,
                    AuditEntry.by(principal, "incidents.stream", source=request.remote, detail=detail),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err

    def language_of(self, accept: str | None, site: str) -> str:
        registered = self._sites().site(site)
        return language(accept, registered.timezone if registered is not None else None)


class _Session:
    """One client's stream: catch up from the streams, then follow the live feed."""

    def __init__(
        self, api: StreamApi, response: web.StreamResponse, scope: Scope, accept: str | None
    ) -> None:
        self._api = api
        self._feed = api.feed
        self._response = response
        self._scope = scope
        self._accept = accept
        self._languages: dict[str, str] = {}
        self._client: Client | None = None
        self.position = Position(0, 0)

    async def write(self, data: bytes) -> None:
        async with asyncio.timeout(self._api.write_timeout_s):
            await self._response.write(data)

    def leave(self) -> None:
        if self._client is not None:
            self._feed.leave(self._client)
            self._client = None

    def behind_body(self) -> dict[str, object]:
        return {
            "detail": "this client fell too far behind the live stream; reconnect with Last-Event-ID",
            "lastEventId": self.position.event_id(),
        }

    async def _send(self, event: LiveEvent) -> None:
        lang = self._languages.get(event.site)
        if lang is None:
            lang = self._languages[event.site] = self._api.language_of(self._accept, event.site)
        self.position = self.position.after(event.stream, event.seq)
        await self.write(event.frame(self.position, lang))

    async def _join(self, resume: Position | None) -> Client:
        """Join the live feed; with `resume`, first send what the client missed up to the point
        the feed had reached when it joined. Retried when the client overflows meanwhile."""
        for _ in range(CATCH_UP_TRIES):
            client, reached = self._feed.join(self._scope)
            self._client = client
            if resume is None:
                self.position = reached
                # Its first id, before any event: a client that drops before the first change
                # still comes back with where it started (an id line alone sets EventSource's).
                await self.write(b"retry: 2000\nid: %s\n\n" % reached.event_id().encode())
                return client
            self.position = resume
            await self.write(b"retry: 2000\n\n")
            for stream in (INCIDENTS, ALARMS):
                upto = reached.of(stream)
                async for event in self._feed.replay(self._scope, stream, resume.of(stream), upto):
                    await self._send(event)
                self.position = self.position.after(stream, upto)
            if not client.behind:
                return client
            self.leave()
            resume = self.position
        raise Behind

    async def run(self, resume: Position | None) -> None:
        if resume is not None:
            resume = await self._feed.within_streams(resume)
        client = await self._join(resume)
        while True:
            if client.behind:
                raise Behind
            try:
                async with asyncio.timeout(self._api.heartbeat_s):
                    event = await client.queue.get()
            except TimeoutError:
                await self.write(heartbeat())
                continue
            if event.seq <= self.position.of(event.stream):
                continue  # sent already while catching up
            await self._send(event)
