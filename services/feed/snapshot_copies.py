"""The blurred pictures of shared events, where the city may fetch them: stream FEED_SNAPSHOTS.

A FEED event below `full` names each detection's picture by the subject of its blurred copy
(`feedsnap.<tenant>.<site>.<ref>`, domain/snapshots.py). When such an event is emitted, the copy
goes with it, in the same unit of work and just before it, so the city never reads a reference
whose picture is not yet there. The bytes come from the video service's SNAPSHOTS stream (only
blurred copies travel on the bus); the city's credentials may get a FEED_SNAPSHOTS message by
subject (services/feed/credentials.py), and nothing of SNAPSHOTS or of the originals. So what the
city can fetch is exactly the blurred pictures of what a policy shared.

A picture already on FEED_SNAPSHOTS (an incident's later changes name the same snapshots) is not
copied again. One missing on SNAPSHOTS (older than its retention, or too large to travel) is
logged and counted; the event still leaves, its reference then finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from services.common.bus.publisher import OutgoingMessage
from services.common.bus.streams import StreamDef
from services.common.contracts.cloudevents import MSG_ID
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.feed import metrics
from services.feed.channel import FEED_DEFAULT_LIMITS, FeedEvent
from services.feed.domain.snapshots import BLURRED_SUBJECT_PREFIX, BlurredRef, parse_blurred
from services.video.channel import SNAPSHOTS, blurred_subject

log = get_logger(__name__)

FEED_SNAPSHOTS = StreamDef(
    "FEED_SNAPSHOTS",
    (f"{BLURRED_SUBJECT_PREFIX}.>",),
    "Blurred snapshots of the events the sharing policies let leave, for the city to fetch by subject",
    config_key="feed_snapshots",
    # As long as the events naming them stay on FEED.
    default_limits=FEED_DEFAULT_LIMITS,
)
_MARK = f'"{BLURRED_SUBJECT_PREFIX}.'.encode()
_PRESENT_MAX = 8_192


def references(data: dict[str, Any]) -> list[BlurredRef]:
    """The blurred copies a shared record names: an alarm's `snapshot`, an incident's `snapshots`."""
    named: Iterable[object] = [data.get("snapshot"), *(data.get("snapshots") or ())]
    out: list[BlurredRef] = []
    for value in named:
        ref = parse_blurred(value)
        if ref is not None and ref not in out:
            out.append(ref)
    return out


def copy_message(ref: BlurredRef, jpeg: bytes) -> OutgoingMessage:
    """The picture on FEED_SNAPSHOTS under the subject the event names; that subject is also its
    id, so a copy emitted twice (two events of one batch) is stored once."""
    return OutgoingMessage(ref.subject, jpeg, {MSG_ID: ref.subject, "Content-Type": "image/jpeg"})


class BlurredCopies:
    """Finds the copies a FEED message needs and reads them from SNAPSHOTS."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        # Subjects seen on FEED_SNAPSHOTS: every later change of a camera's incident names its
        # pictures again, and each look costs a round trip inside the unit of work. Only a copy
        # the stream answered with is remembered (one emitted may still roll back); emptied when
        # full. A copy outlives no event naming it: both streams keep 30 days by default.
        self._present: set[str] = set()

    async def for_event(self, message: OutgoingMessage) -> list[OutgoingMessage]:
        """The copies to emit before `message` (a FEED event): those not on FEED_SNAPSHOTS yet."""
        if _MARK not in message.payload:
            return []  # most events name no picture: no decoding
        event = FeedEvent.FromString(message.payload)
        out = []
        for ref in references(event.data):
            if ref.subject in self._present or await self._get(FEED_SNAPSHOTS.name, ref.subject) is not None:
                metrics.SNAPSHOTS.labels("present").inc()
                if len(self._present) >= _PRESENT_MAX:
                    self._present.clear()
                self._present.add(ref.subject)
                continue
            jpeg = await self._get(SNAPSHOTS.name, blurred_subject(ref.tenant, ref.site, ref.ref))
            if jpeg is None:
                metrics.SNAPSHOTS.labels("missing").inc()
                log.warning(
                    "feed_snapshot_missing",
                    tenant=ref.tenant,
                    site=ref.site,
                    snapshot=ref.ref,
                    event_id=event.id,
                )
                continue
            metrics.SNAPSHOTS.labels("copied").inc()
            out.append(copy_message(ref, jpeg))
        return out

    async def _get(self, stream: str, subject: str) -> bytes | None:
        try:
            found = await self._js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        except (
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.errors.ConnectionClosedError,
        ) as err:
            raise UnavailableError(f"NATS did not answer for {stream}: {err}") from err
        return found.data or b""
