"""The live feed behind `GET /v1/stream`: one subscription per process to INCIDENTS and to ALARMS,
fanned out to every connected client; and the replay from the streams that lets a client resume.

One ordered JetStream consumer per stream per process, started at the stream's end when the
service starts, decodes and renders each change once and offers it to every client that may see
it. A client's queue is bounded: a client that falls `queue_max` changes behind is marked so
(its handler tells it and ends; it resumes with its last id), so a slow phone never grows the
process's memory. A client resuming with `Last-Event-ID` reads what it missed from the stream
itself through an ephemeral consumer of its tenant's subjects (JetStream holds the backlog, not
this process), then joins the live feed without a gap: it registers first, notes how far the
feed had got, replays up to there, and skips the live changes it already had.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter, Gauge

from services.alarms.channel import ALARM_CHANNEL
from services.common.bus.consumer import Poison
from services.common.logging import get_logger
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.live_events import (
    ALARMS,
    INCIDENTS,
    LiveEvent,
    Position,
    alarm_event,
    incident_event,
)
from services.incidents.read_json import EN, KO

log = get_logger(__name__)

LANGUAGES = (KO, EN)
# A replay reads the stream in pages of this many changes, writing each page before the next.
REPLAY_PAGE = 256
# An ephemeral replay consumer left behind by a process that died is removed by the server.
REPLAY_INACTIVE_S = 30.0

_PREFIX = {INCIDENTS: INCIDENT_CHANNEL.prefix, ALARMS: ALARM_CHANNEL.prefix}

# Summed over workers: each process counts its own clients.
CLIENTS = Gauge(
    "safetyhub_incidents_stream_clients", "Live-stream clients connected", multiprocess_mode="livesum"
)
BEHIND = Counter("safetyhub_incidents_stream_behind", "Live-stream clients let go for falling too far behind")


def decode(stream: str, msg: Msg) -> LiveEvent:
    """The live event of one message of `stream`; Poison when it is not a change of it."""
    seq = msg.metadata.sequence.stream
    if stream == INCIDENTS:
        return incident_event(INCIDENT_CHANNEL.decode(msg.data), seq, LANGUAGES)
    return alarm_event(ALARM_CHANNEL.decode(msg.data), seq)


@dataclass(frozen=True, slots=True)
class Scope:
    """What one client sees: its tenant, the sites it asked for (or may read), the types it asked
    for (None: every type), and which of the two streams it may read."""

    tenant: str
    sites: frozenset[str]
    types: frozenset[str] | None
    streams: frozenset[str]

    def wants(self, event: LiveEvent) -> bool:
        return (
            event.stream in self.streams
            and event.tenant == self.tenant
            and event.site in self.sites
            and (self.types is None or event.type in self.types)
        )

    def filter_subject(self, stream: str) -> str:
        # The narrowest subject that still holds every change of the scope: one site, or the tenant.
        prefix = f"{_PREFIX[stream]}.{self.tenant}"
        if len(self.sites) == 1:
            return f"{prefix}.{next(iter(self.sites))}.>"
        return f"{prefix}.>"


@dataclass(eq=False)
class Client:
    """One connected client's queue of live changes, bounded; `behind` once it overflowed."""

    scope: Scope
    queue: asyncio.Queue[LiveEvent]
    behind: bool = False
    dropped: int = field(default=0)

    def offer(self, event: LiveEvent) -> None:
        if self.behind:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True
            self.dropped += 1
            BEHIND.inc()


class LiveFeed:
    """The process's one subscription per stream, and the clients it feeds."""

    def __init__(self, js: JetStreamContext, *, queue_max: int) -> None:
        self._js = js
        self._queue_max = queue_max
        self._clients: set[Client] = set()
        self._subs: list[Subscription] = []
        # The last sequence of each stream the feed has passed on (or skipped): a client that
        # joins now gets, live, every change after it.
        self._seen = {INCIDENTS: 0, ALARMS: 0}
        self.running = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    def position(self) -> Position:
        return Position(self._seen[INCIDENTS], self._seen[ALARMS])

    async def start(self) -> None:
        for stream in (INCIDENTS, ALARMS):
            info = await self._js.stream_info(stream)
            self._seen[stream] = info.state.last_seq
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=info.state.last_seq + 1
            )
            sub = await self._js.subscribe(
                f"{_PREFIX[stream]}.>",
                stream=stream,
                cb=self._receiver(stream),
                ordered_consumer=True,
                config=config,
            )
            self._subs.append(sub)
        self.running = True

    async def stop(self) -> None:
        self.running = False
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the connection may be closing already
                await sub.unsubscribe()
        self._subs.clear()

    def _receiver(self, stream: str) -> Callable[[Msg], Awaitable[None]]:
        async def receive(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            if seq <= self._seen[stream]:
                return  # an ordered consumer restarted after a gap replays from its last
            if not self._clients:
                self._seen[stream] = seq  # nobody to render it for
                return
            try:
                event = decode(stream, msg)
            except Poison as err:
                # The owner's consumers dead-letter it; the live stream only passes it by.
                log.warning("live_stream_undecodable", stream=stream, seq=seq, reason=str(err))
                self._seen[stream] = seq
                return
            self._seen[stream] = seq
            for client in self._clients:
                if client.scope.wants(event):
                    client.offer(event)

        return receive

    async def within_streams(self, resume: Position) -> Position:
        """`resume` with any part past its stream's last sequence reset to 0. Such an id was sent
        before the stream was created anew (its sequences started again): all it holds now is
        new to the client, and skipping "already sent" sequences would hide it."""
        parts = []
        for stream in (INCIDENTS, ALARMS):
            last = (await self._js.stream_info(stream)).state.last_seq
            part = resume.of(stream)
            if part > last:
                log.warning(
                    "live_stream_id_ahead", stream=stream, last_event_id=resume.event_id(), last_seq=last
                )
                part = 0
            parts.append(part)
        return Position(*parts)

    def join(self, scope: Scope) -> tuple[Client, Position]:
        """Register a client; returns it and how far the feed had got (it gets what follows)."""
        client = Client(scope, asyncio.Queue(self._queue_max))
        self._clients.add(client)
        CLIENTS.set(len(self._clients))
        return client, self.position()

    def leave(self, client: Client) -> None:
        self._clients.discard(client)
        CLIENTS.set(len(self._clients))

    async def replay(self, scope: Scope, stream: str, after: int, upto: int) -> AsyncIterator[LiveEvent]:
        """The changes of `stream` in `scope` with a sequence in (after, upto], in order."""
        if after >= upto or stream not in scope.streams:
            return
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=REPLAY_INACTIVE_S,
            mem_storage=True,
        )
        psub = await self._js.pull_subscribe(scope.filter_subject(stream), stream=stream, config=config)
        try:
            info = await psub.consumer_info()
            if info.num_pending == 0:
                return
            while True:
                try:
                    msgs = await psub.fetch(REPLAY_PAGE, timeout=5.0)
                except (TimeoutError, NatsTimeoutError):
                    return  # what was pending aged out of the stream meanwhile
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    if seq > upto:
                        return
                    try:
                        event = decode(stream, msg)
                    except Poison:
                        event = None
                    if event is not None and scope.wants(event):
                        yield event
                    if seq == upto or msg.metadata.num_pending == 0:
                        return
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
            if config.name:  # pull_subscribe names the ephemeral consumer in `config`
                with contextlib.suppress(Exception):
                    await self._js.delete_consumer(stream, config.name)
