"""Photos of an incident: a responder attaches one from the field, anyone who may read it looks.

    POST /v1/incidents/{id}/attachments        (the photo as the body, or multipart field `file`)
    GET  /v1/incidents/{id}/attachments/{aid}  (the bytes, with their Content-Type)

A photo is kept only if its content is a JPEG or PNG (domain/photo.py; 415 otherwise, whatever
it was declared as) of at most 10 MB (413). Attaching is a change like any other: it takes the
incident's ETag in If-Match (428 without, 412 stale), and in one unit of work the photo is
stored (PostgreSQL, its own table), a timeline entry written, the incident's version raised, the
change emitted on INCIDENTS through the outbox and the action audited. The same photo sent again
to the same incident (a retry whose answer was lost) is the attachment already there (200), not
a second one. Another tenant's incident or photo, or one of a site outside the key's, is 404.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import BodyPartReader, web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.contracts.ids import derived_id, new_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.body import read_body
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.logging import get_logger
from services.incidents import repository
from services.incidents.actions_api import matches, required_if_match
from services.incidents.domain.lifecycle import Action, decide
from services.incidents.domain.photo import MAX_PHOTO_BYTES, PHOTO_TYPES, NotAPhoto, Photo, inspect_photo
from services.incidents.domain.timeline import CHANGE_OF_ACTION, Entry
from services.incidents.permissions import READ_INCIDENTS, WORK_INCIDENTS
from services.incidents.read_api import INCIDENT_ID, IncidentReadApi, not_found
from services.incidents.read_json import attachment_json, etag
from services.incidents.service import IncidentsService

log = get_logger(__name__)

# A multipart body carries the photo plus its boundaries and part headers.
MULTIPART_OVERHEAD = 64 * 1024
MAX_ATTACHMENT_BODY = MAX_PHOTO_BYTES + MULTIPART_OVERHEAD
# A phone on a weak link in a plant: 10 MB may take a while.
BODY_TIME_LIMIT_S = 120.0
_RAW_TYPES = (*PHOTO_TYPES, "application/octet-stream")
_MULTIPART = "multipart/form-data"
_MAX_NOTE = 4000
_MAX_FILENAME = 200


class Upload(msgspec.Struct, frozen=True):
    data: bytes
    filename: str = ""
    note: str = ""
    declared: str = ""  # the Content-Type the sender gave the photo


def _unsupported(detail: str) -> Problem:
    return Problem(
        415,
        "Unsupported media type",
        detail,
        slug="unsupported-media-type",
        errors=[{"field": "Content-Type", "detail": detail}],
        accepted=list(PHOTO_TYPES),
    )


def _too_large() -> Problem:
    return Problem(
        413,
        "Content too large",
        f"a photo takes at most {MAX_PHOTO_BYTES} bytes (10 MB)",
        max_bytes=MAX_PHOTO_BYTES,
    )


class IncidentAttachmentsApi:
    def __init__(
        self,
        pool: asyncpg.Pool,
        service: IncidentsService,
        reads: IncidentReadApi,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._reads = reads
        self._pool = pool
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/incidents/{id}/attachments", self.attach)
        app.router.add_get("/v1/incidents/{id}/attachments/{aid}", self.photo)

    # ------------------------------------------------------------------ attach

    async def attach(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if not principal.may(WORK_INCIDENTS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not attach photos to incidents")
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        incident_id = request.match_info["id"]
        if not INCIDENT_ID.match(incident_id):
            raise not_found(incident_id)
        readable = self._reads.readable(principal)
        try:
            # Known and readable before 10 MB are read for it.
            async with self._pool.acquire() as conn:
                site = await repository.incident_site(conn, principal.tenant, incident_id)
            if site is None or site not in readable:
                raise not_found(incident_id)
            if_match = required_if_match(request)
            upload = await self._upload(request)
            try:
                # Decoding and hashing 10 MB take tens of milliseconds: off the loop.
                photo, digest = await asyncio.to_thread(_inspect, upload.data)
            except NotAPhoto as err:
                raise _unsupported(f"{err}; a photo must be a JPEG or PNG") from None
            if upload.declared in PHOTO_TYPES and upload.declared != photo.content_type:
                raise _unsupported(f"sent as {upload.declared} but the content is {photo.content_type}")
            row = repository.AttachmentRow(
                id=new_id(),
                incident_id=incident_id,
                content_type=photo.content_type,
                size=len(upload.data),
                width=photo.width,
                height=photo.height,
                sha256=digest,
                filename=upload.filename,
                added_by=principal.actor,
                added_at=self._clock(),
            )
            return await self._store(request, principal, site, (if_match, row, upload))
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err

    async def _store(
        self,
        request: web.Request,
        principal: Principal,
        site: str,
        asked: tuple[str, repository.AttachmentRow, Upload],
    ) -> web.Response:
        if_match, row, upload = asked
        async with self._service.outbox.unit_of_work() as uow:
            conn = uow.connection
            # The site first, as fusion and the other actions do: the two never deadlock.
            await repository.lock_sites(conn, [(principal.tenant, site)])
            incident = await repository.lock_incident(conn, principal.tenant, row.incident_id)
            if incident is None:
                raise not_found(row.incident_id)
            there = await repository.attachment_by_digest(conn, principal.tenant, incident.id, row.sha256)
            if there is not None:
                return self._answer(there, incident.version, status=200)
            if not matches(if_match, incident.version):
                raise Problem(
                    412,
                    "Precondition failed",
                    f"the incident changed since: it is at version {incident.version} ({incident.status})",
                    slug="stale-etag",
                    headers={"ETag": etag(incident.version)},
                    incidentStatus=str(incident.status),
                    version=incident.version,
                )
            decide(Action.ATTACH, incident.status)  # allowed in every status: a photo may come late
            await repository.add_attachment(conn, principal.tenant, row, upload.data)
            shown = row.filename or row.id
            entry = Entry(
                id=derived_id(int(row.added_at.timestamp() * 1000), incident.id, "attach", row.sha256),
                incident_id=incident.id,
                at=row.added_at,
                actor=principal.actor,
                change=CHANGE_OF_ACTION[Action.ATTACH],
                what=f"photo {shown} ({row.width}x{row.height}) attached by {principal.actor}",
                status=incident.status,
                note=upload.note,
                cause=request.headers.get("X-Request-Id", ""),
                tenant=incident.tenant,
            )
            await repository.add_entries(conn, [entry])
            incident.version += 1
            incident.updated_at = max(incident.updated_at, row.added_at)
            await repository.save_incident(conn, incident)
            self._service.publish(uow, entry, incident)
            await record(
                conn,
                AuditEntry.by(
                    principal,
                    "incident.attached",
                    target=incident.id,
                    reason=upload.note,
                    source=request.remote,
                    detail={
                        "site": site,
                        "attachment": row.id,
                        "sha256": row.sha256,
                        "size": row.size,
                        "version": incident.version,
                    },
                ),
            )
        log.info(
            "incident_photo_attached",
            site=site,
            incident_id=incident.id,
            attachment=row.id,
            size=row.size,
            actor=principal.actor,
            correlation_id=incident.correlation_id or None,
        )
        return self._answer(row, incident.version, status=201)

    @staticmethod
    def _answer(row: repository.AttachmentRow, version: int, *, status: int) -> web.Response:
        body = attachment_json(row)
        return web.Response(
            status=status,
            body=msgspec.json.encode(body),
            content_type="application/json",
            headers={"ETag": etag(version), "Location": body["href"]},
        )

    async def _upload(self, request: web.Request) -> Upload:
        declared = request.content_type.lower()  # aiohttp: without parameters; octet-stream if absent
        if "Content-Type" not in request.headers:
            raise _unsupported("no Content-Type: send the photo as image/jpeg or image/png, or multipart")
        if declared == _MULTIPART:
            if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                raise _unsupported("a multipart body is sent without Content-Encoding")
            if request.content_length is not None and request.content_length > MAX_ATTACHMENT_BODY:
                raise _too_large()
            try:
                async with asyncio.timeout(BODY_TIME_LIMIT_S):
                    return await self._multipart(request)
            except TimeoutError as err:
                raise Problem(
                    408,
                    "Request timeout",
                    f"the photo did not arrive within {BODY_TIME_LIMIT_S:g} s",
                    headers={"Connection": "close"},
                ) from err
            except (ValueError, AssertionError) as err:  # aiohttp's multipart parser on bad framing
                raise Problem(
                    400, "Invalid body", f"not a multipart body: {err}", slug="invalid-body"
                ) from err
        if declared not in _RAW_TYPES:
            raise _unsupported(
                f"Content-Type {declared[:60]} is not a photo: send image/jpeg or image/png"
                " (or multipart/form-data with the photo in field `file`)"
            )
        data = await read_body(request, limit=MAX_PHOTO_BYTES, time_limit_s=BODY_TIME_LIMIT_S)
        if not data:
            raise _unsupported("an empty body is no photo")
        return Upload(data=data, declared=declared)

    async def _multipart(self, request: web.Request) -> Upload:
        reader = await request.multipart()
        fields: dict[str, Any] = {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise Problem(400, "Invalid body", "a nested multipart is not a photo", slug="invalid-body")
            name = part.name or ""
            if name in fields:
                raise _field(name, "given twice")
            if name == "file":
                data = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    data += chunk
                    if len(data) > MAX_PHOTO_BYTES:
                        raise _too_large()
                fields["file"] = (bytes(data), part.filename or "", part.headers.get("Content-Type", ""))
            elif name == "note":
                raw = bytearray()
                while chunk := await part.read_chunk(4096):
                    raw += chunk
                    if len(raw) > 4 * _MAX_NOTE:  # UTF-8 takes at most 4 bytes a character
                        raise _field("note", f"at most {_MAX_NOTE} characters")
                try:
                    note = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _field("note", "not UTF-8 text") from None
                if len(note) > _MAX_NOTE or "\x00" in note:
                    raise _field("note", f"at most {_MAX_NOTE} characters, no U+0000")
                fields["note"] = note
            else:
                raise _field(name or "(unnamed)", "unknown field; the form takes `file` and `note`")
        if "file" not in fields:
            raise _field("file", "required: the photo")
        data, filename, declared = fields["file"]
        if not data:
            raise _unsupported("an empty file is no photo")
        filename = "".join(ch for ch in filename if ch.isprintable())[-_MAX_FILENAME:]
        return Upload(data=data, filename=filename, note=fields.get("note", ""), declared=declared.lower())

    # ------------------------------------------------------------------ read

    async def photo(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if not principal.may(READ_INCIDENTS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read incidents")
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        incident_id, attachment_id = request.match_info["id"], request.match_info["aid"]
        readable = self._reads.readable(principal)
        if not INCIDENT_ID.match(incident_id):
            raise not_found(incident_id)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                site = await repository.incident_site(conn, principal.tenant, incident_id)
                if site is None or site not in readable:
                    raise not_found(incident_id)
                found = None
                if INCIDENT_ID.match(attachment_id):
                    found = await repository.attachment_data(
                        conn, principal.tenant, incident_id, attachment_id
                    )
                if found is None:
                    raise Problem(
                        404, "Not found", f"incident {incident_id} has no attachment '{attachment_id[:64]}'"
                    )
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "incident.attachment.read",
                        target=incident_id,
                        source=request.remote,
                        detail={"site": site, "attachment": attachment_id},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        content_type, sha256, data = found
        return web.Response(
            body=data,
            headers={
                "Content-Type": content_type,
                "ETag": f'"{sha256}"',
                # A photo of an incident is not for shared caches; it never changes once stored.
                "Cache-Control": "private, max-age=86400, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )


def _inspect(data: bytes) -> tuple[Photo, str]:
    return inspect_photo(data), hashlib.sha256(data).hexdigest()


def _field(name: str, detail: str) -> Problem:
    return Problem(
        422,
        "Invalid attachment",
        f"{name}: {detail}",
        slug="invalid-attachment",
        errors=[{"field": name, "detail": detail}],
    )
