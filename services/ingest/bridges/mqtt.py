"""The MQTT bridge: messages of a broker's topics become observations on OBSERVATIONS.

At least once, end to end. The bridge subscribes with QoS 1 in a persistent session
(`clean_session` off), so the broker keeps what is published while the hub is away, and it
acknowledges a message to the broker (PUBACK) only once JetStream has stored its observations or
DEADLETTER has stored it: a crash before that leaves the message unacknowledged, and the broker
sends it again. A message sent again is harmless when it carries its time (or an id): its
observations get the same ids and JetStream or the store drops the copy.

Acknowledgements go out in the order the messages came (MQTT 3.1.1 and 5, §4.6), while the
messages in between are already being checked and published: a bounded pipeline, not one round
trip each. Its bound is `max_in_flight`, which MQTT 5 lets the bridge ask of the broker (Receive
Maximum); with 3.1.1 the broker's own limit applies. Messages reaching the bus together are
published together, one ObservationBatch per device (see coalesce.py).
A lost connection ends the session without acknowledging what is in hand; the bridge connects
again after a growing wait. A bus that does not take a message is asked again, after a growing
wait, with the message held unacknowledged (see `_until_taken`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.common.bus.channel import ChannelPublisher
from services.common.bus.publisher import OutgoingMessage, PublishRejected
from services.common.contracts import ObservationBatch
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.ingest.bridges import metrics
from services.ingest.bridges.coalesce import Coalescer
from services.ingest.bridges.deadletter import BridgeDeadLetters
from services.ingest.bridges.frigate import FrigateReader
from services.ingest.bridges.mqtt_config import MqttConfig
from services.ingest.bridges.mqtt_mapping import TopicMap, Unmapped, resolve_tenant
from services.ingest.bridges.mqtt_tls import read_secret, tls_context
from services.ingest.bridges.sparkplug import Command, NodeId, SparkplugReader
from services.ingest.intake import Checked, Limits, check_all

log = get_logger(__name__)

BRIDGE = "mqtt"
SOURCE = "/ingest/bridges/mqtt"
# The JetStream key-value bucket where Sparkplug births outlive a restart.
BIRTHS_BUCKET = "sparkplug_births"
# How long a stop waits for the messages in hand to be published and acknowledged.
DRAIN_S = 5.0
# MQTT 5's Session Expiry Interval meaning "never" (§3.1.2.11.2).
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
# The embedded broker keeps sessions of named users only (see mqtt_broker.py).
EMBEDDED_USER = "safetyhub"


def _births_key(node: NodeId) -> str:
    # Sparkplug ids may hold characters a key may not: the key is their base64url.
    return base64.urlsafe_b64encode(f"{node.group}/{node.edge}".encode()).decode().rstrip("=")


def _session_options(config: MqttConfig) -> dict[str, Any]:
    """A persistent session in either version. MQTT 5 keeps it with clean start off and a session
    that never expires (what 3.1.1's clean_session off means), and tells the broker, with Receive
    Maximum, how many unacknowledged messages the bridge takes at once: the window its pipeline
    fills, rather than the broker's default for 3.1.1 clients (Mosquitto: 20)."""
    if config.protocol == "3.1.1":
        return {"clean_session": False}
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: untyped
    properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
    properties.ReceiveMaximum = config.max_in_flight
    return {
        "protocol": aiomqtt.ProtocolVersion.V5,
        "clean_start": False,
        "properties": properties,
    }


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        *,
        url: str,
        registry: Callable[[], SiteRegistry],
        publisher: ChannelPublisher[ObservationBatch],
        js: JetStreamContext,
        limits: Limits,
        base: Path = Path(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._use_url(url)
        self._registry = registry
        self._publisher = publisher
        self._dead = BridgeDeadLetters(js, BRIDGE, max_payload=publisher.max_payload)
        self._batches = Coalescer(self._send, source=SOURCE, max_payload=publisher.max_payload)
        self._limits = limits
        self._map = TopicMap(config.topics)
        self._sparkplug = SparkplugReader(config.sparkplug) if config.sparkplug is not None else None
        self._frigate = FrigateReader(config.frigate) if config.frigate is not None else None
        self._subscriptions = sorted(
            {
                *self._map.subscriptions,
                *(self._sparkplug.subscriptions if self._sparkplug else []),
                *(self._frigate.subscriptions if self._frigate else []),
            }
        )
        self._session: aiomqtt.Client | None = None
        self._js = js
        self._births: KeyValue | None = None
        self._clock = clock
        # Read at construction, so a missing file stops start-up rather than every reconnect.
        self._tls = tls_context(config, base)
        self._password = (
            read_secret(base, config.password_file, "ingest.mqtt.password_file")
            if config.password_file
            else config.password
        )
        self._username = config.username
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._holding = 0  # messages waiting for the bus to take them
        self._last_error = "not connected yet"
        self._stopping = False
        self._draining = asyncio.Event()

    def _use_url(self, url: str) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._url = f"{parts.scheme}://{self._host}:{self._port}"

    def use_embedded(self, url: str) -> None:
        """Read from the embedded broker at `url` (known once it listens) under a user name."""
        self._use_url(url)
        if self._username is None:
            self._username = EMBEDDED_USER

    @property
    def connected(self) -> bool:
        return self._connected

    async def status(self) -> str | None:
        """None while connected, otherwise why not (for /readyz's peers)."""
        if self._connected and not self._holding:
            return None
        if self._connected:
            return f"connected, holding messages: {self._last_error}"[:300]
        return f"not connected to {self._url}: {self._last_error}"[:300]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-bridge")

    async def stop(self, drain_s: float = DRAIN_S) -> None:
        """Stop reading, finish the messages in hand (published and acknowledged) for at most
        `drain_s`, then disconnect; what is left unacknowledged comes again from the broker."""
        self._stopping = True
        self._draining.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=drain_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        metrics.CONNECTED.labels(BRIDGE).set(1 if connected else 0)

    def _client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self._host,
            self._port,
            identifier=self._config.client_id,
            username=self._username,
            password=self._password,
            keepalive=self._config.keepalive_s,
            tls_context=self._tls,
            timeout=10.0,
            **_session_options(self._config),
        )
        # aiomqtt has no switch for it yet: paho's own manual acknowledgement, so a message is
        # acknowledged once stored, not when it arrives.
        client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        reconnect = self._config.reconnect
        delay = reconnect.min_s
        while not self._stopping:
            try:
                await self._restore_births()
                async with self._client() as client:
                    await client.subscribe([(topic, 1) for topic in self._subscriptions])
                    self._set_connected(True)
                    self._session = client
                    metrics.CONNECTS.labels(BRIDGE).inc()
                    log.info("mqtt_bridge_connected", url=self._url, topics=self._subscriptions)
                    delay = reconnect.min_s
                    await self._consume(client)
            except aiomqtt.MqttError as err:
                self._last_error = str(err) or type(err).__name__
                log.warning(
                    "mqtt_bridge_disconnected", url=self._url, error=self._last_error, retry_in_s=delay
                )
            except Exception as err:  # the bus refused or did not answer: reconnect and get it again
                self._last_error = f"{type(err).__name__}: {err}"
                log.warning(
                    "mqtt_bridge_interrupted", url=self._url, error=self._last_error, retry_in_s=delay
                )
            finally:
                self._session = None
                self._set_connected(False)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, reconnect.max_s)

    async def _restore_births(self) -> None:
        """Open the bucket of Sparkplug births and read back what earlier runs kept, once."""
        if self._sparkplug is None or self._births is not None:
            return
        try:
            kv = await self._js.key_value(BIRTHS_BUCKET)
        except BucketNotFoundError:
            kv = await self._js.create_key_value(
                bucket=BIRTHS_BUCKET, history=1, description="Sparkplug B births per edge node"
            )
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        for key in keys:
            entry = await kv.get(key)
            if entry.value:
                self._sparkplug.restore(entry.value)
        self._births = kv
        log.info("sparkplug_births_restored", nodes=len(keys))

    async def _consume(self, client: aiomqtt.Client) -> None:
        in_hand: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]] = asyncio.Queue(
            self._config.max_in_flight
        )

        async def acknowledge() -> None:
            while True:
                message, task = await in_hand.get()
                await task  # raises when the bus did not take it: the session ends unacknowledged
                client._client.ack(message.mid, message.qos)
                in_hand.task_done()

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                task = asyncio.create_task(self._handle(message.topic.value, data))
                await in_hand.put((message, task))

        acker = asyncio.create_task(acknowledge(), name="mqtt-bridge-ack")
        reader = asyncio.create_task(read(), name="mqtt-bridge-read")
        draining = asyncio.create_task(self._draining.wait())
        try:
            done, _ = await asyncio.wait((acker, reader, draining), return_when=asyncio.FIRST_COMPLETED)
            for finished in done - {draining}:
                finished.result()
            if draining in done:
                # Stopping: read no more, and let the acknowledgements catch up with what was read.
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                joined = asyncio.create_task(in_hand.join())
                await asyncio.wait((joined, acker), return_when=asyncio.FIRST_COMPLETED)
                joined.cancel()
        finally:
            draining.cancel()
            for task in (acker, reader):
                task.cancel()
            while not in_hand.empty():
                in_hand.get_nowait()[1].cancel()
            await asyncio.gather(acker, reader, return_exceptions=True)

    async def _handle(self, topic: str, payload: bytes) -> None:
        """One message: its observations published, or the message dead-lettered with the
        reason. Raises only when the bus takes neither (the message must come again).

        Everything up to the first await runs in the order the messages arrived (tasks start in
        order), so a Sparkplug node's births, data and deaths change its state in that order."""
        sparkplug = self._sparkplug is not None and self._sparkplug.accepts(topic)
        frigate = self._frigate is not None and self._frigate.accepts(topic)
        bridge = "sparkplug" if sparkplug else "frigate" if frigate else BRIDGE
        metrics.RECEIVED.labels(bridge).inc()
        now = self._clock()
        problems: list[str] = []
        rebirth: Command | None = None
        births: tuple[str, bytes] | None = None
        try:
            registry = self._registry()
            if self._sparkplug is not None and sparkplug:
                outcome = self._sparkplug.read(topic, payload, now, time.monotonic())
                problems, rebirth = outcome.problems, outcome.rebirth
                if outcome.changed is not None:
                    # Taken now, in arrival order; kept before the message is acknowledged.
                    births = (_births_key(outcome.changed), self._sparkplug.export(outcome.changed))
                if outcome.out_of_step:
                    metrics.OUT_OF_STEP.labels("sparkplug").inc()
                    why = "; ".join(outcome.out_of_step)
                    log.warning("sparkplug_out_of_step", topic=topic[:200], why=why)
                tenant = resolve_tenant(outcome.items, outcome.tenant, registry)
                checked = check_all(enumerate(outcome.items), registry, now, self._limits)
                count = len(outcome.items)
            else:
                tenant, checked, count = self._read(topic, payload, registry, now, frigate=frigate)
        except Unmapped as err:
            await self._deadletter(topic, payload, reason=str(err), category=err.category)
            return
        except Exception as err:  # a message that breaks the mapping must not stop the bridge
            log.exception("mqtt_bridge_mapping_failed", topic=topic[:200])
            await self._deadletter(topic, payload, reason=f"cannot map: {err!r}", category="error")
            return
        if births is not None and self._births is not None:
            kv, (key, state) = self._births, births
            await self._until_taken(lambda: kv.put(key, state), topic)
        if checked.valid:
            # With the other messages in hand: one bus message per device (see coalesce.py).
            metrics.PUBLISHED.labels(bridge).inc(await self._batches.publish(tenant, checked, now))
        if rebirth is not None:
            await self._command(rebirth)
        if checked.errors:
            metrics.REJECTED_ITEMS.labels(bridge).inc(len(checked.errors))
        problems += [
            (f"item {e.index}: " if count > 1 else "") + f"{e.field or 'item'}: {e.detail}"
            for e in checked.errors[:5]
        ]
        if problems:
            category = "invalid" if checked.errors else "unusable"
            await self._deadletter(topic, payload, reason="; ".join(problems), category=category)

    async def _send(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._until_taken(lambda: self._publisher.publish(messages), messages[0].subject)

    def _read(
        self, topic: str, payload: bytes, registry: SiteRegistry, now: datetime, *, frigate: bool
    ) -> tuple[str, Checked, int]:
        """A Frigate event's or a JSON topic's observations: the tenant, the checked items, and
        how many the message carried. Raises Unmapped."""
        if self._frigate is not None and frigate:
            read = self._frigate.read(payload, registry, now, self._limits)
            return read.tenant, read.checked, read.count
        mapped = self._map.map(topic, payload, registry, now, self._limits)
        return mapped.tenant, mapped.checked, mapped.count

    async def _command(self, command: Command) -> None:
        """Send a Sparkplug command (QoS 0, as the specification has it); lost with the session."""
        client = self._session
        if client is None:
            return
        try:
            await client.publish(command.topic, command.payload, qos=0)
            metrics.COMMANDS.labels("sparkplug").inc()
            log.info("sparkplug_rebirth_requested", topic=command.topic)
        except aiomqtt.MqttError as err:
            log.warning("sparkplug_command_failed", topic=command.topic, error=str(err))

    async def _deadletter(self, topic: str, payload: bytes, *, reason: str, category: str) -> None:
        await self._until_taken(
            lambda: self._dead.send(topic, payload, reason=reason, category=category), topic
        )

    async def _until_taken(self, send: Callable[[], Awaitable[object]], topic: str) -> None:
        """`send` again, after a growing wait, until JetStream takes it. The message is held
        meanwhile, unacknowledged: the broker stops sending once its in-flight window is full,
        and a bus outage does not cost the session (some brokers drop what a client that
        disconnects had not acknowledged)."""
        reconnect = self._config.reconnect
        delay = reconnect.min_s
        held = False
        try:
            while True:
                try:
                    await send()
                    return
                except (UnavailableError, PublishRejected, NatsError, TimeoutError) as err:
                    if not held:
                        held = True
                        self._holding += 1
                    self._last_error = f"the event bus did not take a message: {err}"
                    log.warning(
                        "mqtt_bridge_publish_retry", topic=topic[:200], error=str(err), retry_in_s=delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, reconnect.max_s)
        finally:
            if held:
                self._holding -= 1
