"""The OPC UA bridge: data changes of configured nodes become observations on OBSERVATIONS.

One link per server, each on its own: a server that is down, refuses a node or is slow costs
the others nothing, and /readyz reports each under `peers` (`ingest.opcua.<server>`).

A link connects, creates its subscriptions (publishing interval) and monitored items (sampling
interval, queue size, a DataChangeFilter with the deadband), then reads the data changes in the
order the server published them and publishes their observations through the same checks,
ids and contracts as `POST /v1/observations`. A node the server does not know (BadNodeIdUnknown,
or any other refusal) is logged, counted, dead-lettered and named in readiness; the other nodes
are watched all the same.

A lost connection (the client's keep-alive read fails or the socket closes) becomes one
comm-loss observation per node of the server (quality bad, no value), then the link connects
again after a growing wait and subscribes afresh: the server then sends each node's current
value, with its own timestamp, so a value already stored dedups by its id.

At least once while the hub runs: a batch of data changes is taken from the subscription only
after JetStream took the previous one, and a bus that does not take a batch is asked again after
a growing wait. The OPC UA client acknowledges notifications to the server on its own; what is
received and not yet published when the hub stops is not sent again by the server, but the
re-subscription at the next start sends every node's current value.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from nats.js import JetStreamContext

from services.common.bus.channel import ChannelPublisher
from services.common.contracts import ObservationBatch
from services.common.http.ops import ReadinessCheck
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.ingest.bridges import metrics
from services.ingest.bridges.deadletter import BridgeDeadLetters
from services.ingest.bridges.opcua_config import (
    Credentials,
    LoadedOpcua,
    NodeMap,
    ReconnectConfig,
    ServerConfig,
    SubscriptionConfig,
)
from services.ingest.bridges.opcua_outlet import BRIDGE, Item, Outlet
from services.ingest.bridges.opcua_values import NotANumber, Sample, comm_loss, observation, status_name
from services.ingest.intake import Limits

log = get_logger(__name__)

# Data changes taken from a subscription and published as one batch at most.
BATCH = 500
# Data changes the client holds per subscription before the link reconnects (and the server
# sends current values again) rather than drop one silently.
QUEUE = 20_000
_SECURITY_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


def _data_change_filter(subscription: SubscriptionConfig, node: NodeMap) -> ua.DataChangeFilter | None:
    deadband = node.deadband or subscription.deadband
    if deadband is None:
        return None
    flt = ua.DataChangeFilter()
    flt.Trigger = ua.DataChangeTrigger.StatusValue
    if deadband.absolute is not None:
        flt.DeadbandType = ua.DeadbandType.Absolute
        flt.DeadbandValue = deadband.absolute
    else:
        flt.DeadbandType = ua.DeadbandType.Percent
        flt.DeadbandValue = deadband.percent or 0.0
    return flt


def monitored_item(config: SubscriptionConfig, node: NodeMap, handle: int) -> ua.MonitoredItemCreateRequest:
    """The node's Value attribute, sampled and filtered as configured, reported under `handle`."""
    item = ua.ReadValueId()
    item.NodeId = ua.NodeId.from_string(node.node)
    item.AttributeId = AttributeIds.Value
    params = ua.MonitoringParameters()
    params.ClientHandle = handle
    sampling = node.sampling_interval_ms
    params.SamplingInterval = config.sampling_interval_ms if sampling is None else sampling
    params.QueueSize = config.queue_size
    params.DiscardOldest = True
    flt = _data_change_filter(config, node)
    if flt is not None:
        params.Filter = flt
    request = ua.MonitoredItemCreateRequest()
    request.ItemToMonitor = item
    request.MonitoringMode = ua.MonitoringMode.Reporting
    request.RequestedParameters = params
    return request


class ServerLink:
    """One OPC UA server: connected, subscribed, read; reconnected after a loss."""

    def __init__(
        self,
        server: ServerConfig,
        credentials: Credentials,
        reconnect: ReconnectConfig,
        *,
        registry: Callable[[], SiteRegistry],
        publisher: ChannelPublisher[ObservationBatch],
        dead: BridgeDeadLetters,
        limits: Limits,
        clock: Callable[[], datetime],
    ) -> None:
        self.server = server
        self._credentials = credentials
        self._reconnect = reconnect
        self._outlet = Outlet(
            server, registry=registry, publisher=publisher, dead=dead, limits=limits, retry=reconnect
        )
        self._clock = clock
        self._nodes = [node for sub in server.subscriptions for node in sub.nodes]
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._connected = False
        self._down_reported = False
        self._refused: dict[str, str] = {}  # node id -> status name, of the current connection
        self._last_error = "not connected yet"
        self._handle = 0

    @property
    def connected(self) -> bool:
        return self._connected

    async def status(self) -> str | None:
        """None while connected with every node subscribed, otherwise what is wrong."""
        if not self._connected:
            return f"not connected to {self.server.endpoint}: {self._last_error}"[:300]
        problems = []
        if self._refused:
            refused = ", ".join(f"{node} ({why})" for node, why in sorted(self._refused.items()))
            problems.append(f"{len(self._refused)} node(s) not subscribed: {refused}")
        if self._outlet.holding is not None:
            problems.append(f"holding data changes: {self._outlet.holding}")
        return "; ".join(problems)[:300] if problems else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"opcua-{self.server.name}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        metrics.PEER_CONNECTED.labels(BRIDGE, self.server.name).set(1 if connected else 0)

    async def _client(self) -> Client:
        server = self.server
        # The client's watchdog reads the server's state every timeout_s / 2 and counts the
        # connection lost when one read goes unanswered that long.
        client = Client(server.endpoint, timeout=server.timeout_s, watchdog_intervall=server.timeout_s / 2)
        client.name = client.description = "safetyhub"
        client.application_uri = "urn:safetyhub:ingest"
        if server.username is not None:
            client.set_user(server.username)
            if self._credentials.password is not None:
                client.set_password(self._credentials.password)
        security = server.security
        if security.policy == "Basic256Sha256":
            creds = self._credentials
            assert creds.certificate is not None  # the config's check
            assert creds.private_key is not None
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(creds.certificate),
                private_key=str(creds.private_key),
                server_certificate=str(creds.server_certificate) if creds.server_certificate else None,
                mode=_SECURITY_MODES[security.mode],
            )
        return client

    async def _run(self) -> None:
        delay = self._reconnect.min_s
        while not self._stopping:
            client: Client | None = None
            try:
                client = await self._client()
                await client.connect()
                subscriptions = await self._subscribe(client)
                self._set_connected(True)
                self._down_reported = False
                metrics.CONNECTS.labels(BRIDGE).inc()
                log.info("opcua_connected", server=self.server.name, endpoint=self.server.endpoint)
                delay = self._reconnect.min_s
                await self._consume(client, subscriptions)
                self._last_error = "the connection was lost"
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any failure of a peer: report, wait, connect again
                self._last_error = f"{type(err).__name__}: {err}"[:200]
            finally:
                was_connected = self._connected
                self._set_connected(False)
                self._refused = {}
                metrics.UNSUBSCRIBED.labels(BRIDGE, self.server.name).set(0)
                if client is not None:
                    await _disconnect(client)
            if self._stopping:
                return
            log.warning(
                "opcua_disconnected",
                server=self.server.name,
                endpoint=self.server.endpoint,
                error=self._last_error,
                was_connected=was_connected,
                retry_in_s=delay,
            )
            if not self._down_reported:
                # Once per outage: the devices behind the server are not reporting from now on.
                await self._report_comm_loss(self._last_error)
                self._down_reported = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect.max_s)

    async def _subscribe(self, client: Client) -> list[tuple[Subscription, dict[int, NodeMap]]]:
        """The subscriptions and their monitored items; a node the server refuses is reported and
        left out, the others are watched."""
        made: list[tuple[Subscription, dict[int, NodeMap]]] = []
        refused: dict[str, str] = {}
        for config in self.server.subscriptions:
            subscription = await client.create_subscription(
                config.publishing_interval_ms, queue_maxsize=QUEUE, overflow=OverflowPolicy.DISCONNECT
            )
            handles: dict[int, NodeMap] = {}
            requests = []
            for node in config.nodes:
                self._handle += 1
                handles[self._handle] = node
                requests.append(monitored_item(config, node, self._handle))
            results = await subscription.create_monitored_items(requests)
            for (handle, node), result in zip(list(handles.items()), results, strict=True):
                if isinstance(result, ua.StatusCode):
                    del handles[handle]
                    refused[node.node] = result.name
            made.append((subscription, handles))
        self._refused = refused
        metrics.UNSUBSCRIBED.labels(BRIDGE, self.server.name).set(len(refused))
        for node_id, why in sorted(refused.items()):
            log.error("opcua_node_refused", server=self.server.name, node=node_id, status=why)
            await self._outlet.deadletter(
                node_id,
                {"node": node_id},
                reason=f"the server refused to monitor the node: {why}",
                category="unknown_node",
            )
        return made

    async def _consume(
        self, client: Client, subscriptions: list[tuple[Subscription, dict[int, NodeMap]]]
    ) -> None:
        """Read every subscription until the connection is lost (or the bridge stops)."""
        readers = [
            asyncio.create_task(self._read(subscription, handles), name=f"opcua-{self.server.name}-read")
            for subscription, handles in subscriptions
        ]
        lost = asyncio.create_task(_lost(client))
        try:
            done, _ = await asyncio.wait((lost, *readers), return_when=asyncio.FIRST_COMPLETED)
            for finished in done - {lost}:
                finished.result()  # a reader that failed: its error ends the connection
        finally:
            for task in (lost, *readers):
                task.cancel()
            await asyncio.gather(lost, *readers, return_exceptions=True)

    async def _read(self, subscription: Subscription, handles: Mapping[int, NodeMap]) -> None:
        """Data changes in the order they came, in batches of what has arrived meanwhile; returns
        when the client closes the subscription (the connection is then gone)."""
        # asyncua's iterator has no get-without-waiting: its queue is read directly for the rest
        # of a batch (one JetStream round trip per batch, not per data change).
        queue = subscription._event_queue
        while True:
            try:
                first = await subscription.next_event()
            except StopAsyncIteration:
                return
            if first is None:
                continue
            events = [first]
            closed = False
            while queue is not None and len(events) < BATCH and not queue.empty():
                event = queue.get_nowait()
                if event is None:
                    closed = True
                    break
                events.append(event)
            await self._handle_events(events, handles)
            if closed:
                return

    async def _handle_events(self, events: Sequence[object], handles: Mapping[int, NodeMap]) -> None:
        now = self._clock()
        items: list[Item] = []
        for event in events:
            if not isinstance(event, DataChangeEvent):
                continue  # status changes: a lost subscription shows as a lost connection
            notification = event.data.monitored_item
            node = handles.get(notification.ClientHandle)
            if node is None:
                continue
            value = notification.Value
            metrics.RECEIVED.labels(BRIDGE).inc()
            status = value.StatusCode.value if value.StatusCode is not None else 0
            sample = Sample(event.value, status, value.SourceTimestamp, value.ServerTimestamp)
            try:
                items.append((node.node, observation(self.server, node, sample, now)))
            except NotANumber as err:
                await self._outlet.deadletter(
                    node.node, _describe(sample), reason=f"cannot map: {err}", category="unusable"
                )
        if items:
            await self._outlet.publish(items, now)

    async def _report_comm_loss(self, why: str) -> None:
        at = self._clock()
        items = comm_loss(self.server, self._nodes, at, f"OPC UA server '{self.server.name}': {why}")
        metrics.COMM_LOSSES.labels(BRIDGE).inc()
        try:
            pairs = [(node.node, item) for node, item in zip(self._nodes, items, strict=True)]
            await self._outlet.publish(pairs, at)
        except asyncio.CancelledError:
            raise
        except Exception:  # never lets a reporting failure stop the link's reconnects
            log.exception("opcua_comm_loss_not_published", server=self.server.name)


async def _lost(client: Client) -> None:
    """Returns once the client's watchdog finds the connection gone."""
    async with client.uaclient.subscribe_state() as states:
        await states.wait_for_state(UaClientState.DISCONNECTED)


async def _disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout=2.0)


def _describe(sample: Sample) -> dict[str, object]:
    return {
        "value": repr(sample.value)[:200],
        "status": status_name(sample.status),
        "source_timestamp": sample.source_time.isoformat() if sample.source_time else None,
        "server_timestamp": sample.server_time.isoformat() if sample.server_time else None,
    }


class OpcuaBridge:
    """Every configured server's link."""

    def __init__(
        self,
        loaded: LoadedOpcua,
        *,
        registry: Callable[[], SiteRegistry],
        publisher: ChannelPublisher[ObservationBatch],
        js: JetStreamContext,
        limits: Limits,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        dead = BridgeDeadLetters(js, BRIDGE, max_payload=publisher.max_payload)
        self.links = [
            ServerLink(
                server,
                loaded.credentials[server.name],
                loaded.config.reconnect,
                registry=registry,
                publisher=publisher,
                dead=dead,
                limits=limits,
                clock=clock,
            )
            for server in loaded.config.servers
        ]

    def peer_checks(self) -> dict[str, ReadinessCheck]:
        return {f"opcua.{link.server.name}": link.status for link in self.links}

    def start(self) -> None:
        for link in self.links:
            link.start()

    async def stop(self) -> None:
        await asyncio.gather(*(link.stop() for link in self.links))
