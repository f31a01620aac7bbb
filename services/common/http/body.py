"""Read a request body within bounds: its size (before and after inflating) and its time.

aiohttp would inflate `Content-Encoding: gzip` bodies as they arrive, before any handler (and so
before authentication) runs, and without bound: a 1 MB body can inflate to 1 GiB. The server
therefore runs with automatic decompression off, and a handler that takes a body reads it here,
after authentication: compressed bodies are inflated in steps that stop as soon as the output
passes the limit.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from services.common.http.problem import Problem

ENCODINGS = "gzip, deflate"
_CHUNK = 64 * 1024


def _too_large(limit: int, what: str) -> Problem:
    return Problem(
        413,
        "Payload too large",
        f"The request body {what} exceeds the limit of {limit} bytes",
        max_bytes=limit,
    )


def _inflater(request: web.Request) -> zlib._Decompress | None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # HTTP's "deflate" is the zlib format; some clients send raw deflate. 32 + window
        # detects zlib and gzip headers; raw deflate is refused as corrupt.
        return zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)
    raise Problem(
        415,
        "Unsupported media type",
        f"Content-Encoding '{encoding[:40]}' is not accepted; send the body as is, or with"
        f" Content-Encoding {ENCODINGS}",
        slug="unsupported-media-type",
        headers={"Accept-Encoding": ENCODINGS},
    )


def check_encoding(request: web.Request) -> None:
    """Refuse (415) a Content-Encoding this server does not inflate, before reading anything."""
    _inflater(request)


async def read_body(request: web.Request, *, limit: int, time_limit_s: float) -> bytes:
    """The body, inflated if it is compressed; 413 past `limit` bytes (sent or inflated), 408 if
    it does not arrive within `time_limit_s` seconds, 400 if its compression is corrupt."""
    inflater = _inflater(request)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, "as sent")
    body = bytearray()
    received = 0
    try:
        async with asyncio.timeout(time_limit_s):
            async for chunk in request.content.iter_chunked(_CHUNK):
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit, "as sent")
                if inflater is None:
                    body += chunk
                    continue
                # At most one byte past the limit: enough to know the limit is passed, and
                # never more work than the limit allows, however well the data compresses.
                body += inflater.decompress(chunk, limit - len(body) + 1)
                if len(body) > limit or inflater.unconsumed_tail:
                    raise _too_large(limit, "once inflated")
    except TimeoutError as err:
        raise Problem(
            408,
            "Request timeout",
            f"The request body did not arrive within {time_limit_s:g} s",
            headers={"Connection": "close"},
        ) from err
    except zlib.error as err:
        raise Problem(400, "Malformed body", f"The compressed body is corrupt: {err}") from err
    if inflater is not None and not inflater.eof:
        raise Problem(400, "Malformed body", "The compressed body is truncated")
    return bytes(body)
