"""Dead letters: a message a consumer cannot process is moved, with the reason, not retried forever.

Subject `deadletter.<consumer>.<original subject>` in stream DEADLETTER; the payload and headers are
the original ones, plus headers naming the reason, the consumer, the original subject and the
original stream sequence. `Nats-Msg-Id` is derived from consumer and sequence, so a dead letter
sent twice (crash between publish and ack) is stored once.
"""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from services.common.bus.streams import deadletter_subject
from services.common.contracts.cloudevents import MSG_ID
from services.common.logging import get_logger

log = get_logger(__name__)

DEADLETTERED = Counter(
    "safetyhub_deadletter", "Messages moved to the dead-letter stream", ["consumer", "reason"]
)

REASON_HEADER = "Safetyhub-Deadletter-Reason"
CONSUMER_HEADER = "Safetyhub-Deadletter-Consumer"
SUBJECT_HEADER = "Safetyhub-Original-Subject"
SEQUENCE_HEADER = "Safetyhub-Original-Sequence"


class DeadLetters:
    def __init__(self, js: JetStreamContext, consumer: str) -> None:
        self._js = js
        self._consumer = consumer

    async def send(self, msg: Msg, *, reason: str, category: str) -> None:
        """Store `msg` in DEADLETTER with `reason`, then acknowledge it on its own stream."""
        seq = msg.metadata.sequence.stream if msg.reply else 0
        headers = {k: v for k, v in (msg.headers or {}).items() if k != MSG_ID}
        headers.update(
            {
                MSG_ID: f"dl-{self._consumer}-{seq}",
                REASON_HEADER: " ".join(reason.split())[:1000],
                CONSUMER_HEADER: self._consumer,
                SUBJECT_HEADER: msg.subject,
                SEQUENCE_HEADER: str(seq),
            }
        )
        await self._js.publish(deadletter_subject(self._consumer, msg.subject), msg.data, headers=headers)
        await msg.term()
        DEADLETTERED.labels(self._consumer, category).inc()
        log.warning(
            "message_deadlettered", consumer=self._consumer, subject=msg.subject, seq=seq, reason=reason
        )
