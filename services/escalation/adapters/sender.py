"""One attempt of one delivery over HTTP: the Standard Webhooks headers, a POST with connect and
total timeouts on a kept connection (http1.py), and the answer reduced to what decides the next
step (domain/retry.py).

Whatever the receiver does (refuses, hangs, closes the connection, answers something that is not
HTTP) is an `Answer` with an error, never an exception out of `send`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.escalation.adapters.deliveries_db import Claimed
from services.escalation.adapters.http1 import BadAnswer, Client, ConnectTimeout, Disconnected
from services.escalation.adapters.secrets import signature
from services.escalation.domain.retry import Answer

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
        self._connect = connect_timeout_s
        self._total = total_timeout_s
        self._client: Client | None = None

    async def start(self) -> None:
        # No pool limit of the client's own: the engine bounds attempts per endpoint, and a
        # shared cap would let one slow endpoint hold the connections others need.
        self._client = Client(connect_timeout_s=self._connect)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, delivery: Claimed, at: datetime | None = None) -> Answer:
        if self._client is None:
            raise RuntimeError("the sender is not started")
        at = at or datetime.now(UTC)
        try:
            async with asyncio.timeout(self._total):
                reply = await self._client.post(delivery.url, delivery.body, webhook_headers(delivery, at))
            return Answer(reply.status, reply.reason, reply.retry_after)
        except ConnectTimeout as err:
            return Answer(None, f"{err} (connect timeout)")
        except TimeoutError:
            return Answer(None, f"no answer within the timeout ({self._total:g} s total)")
        except Disconnected as err:
            return Answer(None, f"disconnected before a whole answer: {err}")
        except BadAnswer as err:
            return Answer(None, f"not an HTTP answer: {err}"[:500])
        except (OSError, ValueError, UnicodeError) as err:
            return Answer(None, f"{type(err).__name__}: {err}"[:500])
