"""Dead letters of a bridge: a message from a peer that cannot be decoded or mapped is kept in
DEADLETTER with the reason, on `deadletter.bridge-<bridge>.<topic as subject tokens>`.

Payload as received (cut to what one bus message may carry) and headers naming the reason, the
bridge and the original topic. `Nats-Msg-Id` is derived from the topic and the payload, so the
same message redelivered after a crash (dead-lettered, not yet acknowledged to the peer) is kept
once.
"""

from __future__ import annotations

import hashlib
import re

from nats.js import JetStreamContext

from services.common.bus.deadletter import (
    CONSUMER_HEADER,
    DEADLETTERED,
    REASON_HEADER,
    SEQUENCE_HEADER,
    SUBJECT_HEADER,
)
from services.common.bus.streams import deadletter_subject
from services.common.contracts.cloudevents import MSG_ID
from services.common.logging import get_logger
from services.ingest.bridges import metrics

log = get_logger(__name__)

BRIDGE_HEADER = "Safetyhub-Bridge"
TRUNCATED_HEADER = "Safetyhub-Truncated"
_NOT_SUBJECT = re.compile(r"[^A-Za-z0-9_-]")
_MAX_TOKENS = 16
_ROOM = 8_192  # left under max_payload for the headers


def subject_tokens(topic: str) -> str:
    """An MQTT topic as NATS subject tokens: each level cleaned to [A-Za-z0-9_-], never empty."""
    levels = topic.split("/")[:_MAX_TOKENS]
    return ".".join(_NOT_SUBJECT.sub("_", level)[:64] or "_" for level in levels)


def _header(text: str) -> str:
    return " ".join(text.split())[:1000]


class BridgeDeadLetters:
    def __init__(self, js: JetStreamContext, bridge: str, *, max_payload: int) -> None:
        self._js = js
        self._bridge = bridge
        self._consumer = f"bridge-{bridge}"
        self._max_payload = max(1024, max_payload - _ROOM)

    async def send(self, topic: str, payload: bytes, *, reason: str, category: str) -> None:
        """Store the message in DEADLETTER; raises when JetStream does not take it (then the
        peer is not acknowledged, and the message comes again)."""
        digest = hashlib.sha256(topic.encode() + b"\x00" + payload).hexdigest()[:40]
        headers = {
            MSG_ID: f"dl-{self._consumer}-{digest}",
            REASON_HEADER: _header(reason),
            CONSUMER_HEADER: self._consumer,
            SUBJECT_HEADER: _header(topic),
            SEQUENCE_HEADER: "0",  # a peer's message has no stream sequence
            BRIDGE_HEADER: self._bridge,
        }
        data = payload
        if len(data) > self._max_payload:
            data = data[: self._max_payload]
            headers[TRUNCATED_HEADER] = str(len(payload))
        subject = deadletter_subject(self._consumer, subject_tokens(topic))
        await self._js.publish(subject, data, headers=headers)
        DEADLETTERED.labels(self._consumer, category).inc()
        metrics.DEADLETTERED.labels(self._bridge, category).inc()
        log.warning("bridge_message_deadlettered", bridge=self._bridge, topic=topic[:200], reason=reason)
