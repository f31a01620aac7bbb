"""One attempt of one delivery over HTTP: the Standard Webhooks headers, a POST with connect and
total timeouts, and the answer reduced to what decides the next step (domain/retry.py).

Whatever the receiver does (refuses, hangs, closes the connection, answers something that is not
HTTP) is an `Answer` with an error, never an exception out of `send`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp

from services.escalation.adapters.deliveries_db import Claimed
from services.escalation.adapters.secrets import signature
from services.escalation.domain.retry import Answer

# Read at most this much of an answer: its body decides nothing, but the connection is reused
# only once the body is read.
_MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "safetyhub-escalation/1"


def webhook_headers(delivery: Claimed, at: datetime) -> dict[str, str]:
    headers = dict(delivery.headers)
    headers.update(
        {
            "content-type": delivery.content_type,
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(delivery.signing_secrets(at), delivery.id, at, delivery.body),
        }
    )
    return headers


class Sender:
    def __init__(self, *, connect_timeout_s: float, total_timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
        self._total = total_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No pool limit of the session's own: the engine bounds attempts per endpoint, and a
        # shared cap would let one slow endpoint hold the connections others need.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False, raise_for_status=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, delivery: Claimed, at: datetime | None = None) -> Answer:
        if self._session is None:
            raise RuntimeError("the sender is not started")
        at = at or datetime.now(UTC)
        try:
            async with self._session.post(
                delivery.url,
                data=delivery.body,
                headers=webhook_headers(delivery, at),
                allow_redirects=False,
            ) as response:
                await response.content.read(_MAX_ANSWER_BYTES)
                return Answer(response.status, response.reason or "", response.headers.get("Retry-After"))
        except TimeoutError:
            return Answer(None, f"no answer within the timeout ({self._total:g} s total)")
        except aiohttp.ClientError as err:
            return Answer(None, f"{type(err).__name__}: {err}"[:500])
        except (OSError, ValueError, UnicodeError) as err:
            return Answer(None, f"{type(err).__name__}: {err}"[:500])
        except asyncio.CancelledError:
            raise
