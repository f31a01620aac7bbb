"""Ingest as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from services.common.bus.channel import ChannelPublisher
from services.common.bus.publisher import JetStreamPublisher
from services.common.errors import ConfigError
from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.ingest import metrics
from services.ingest.alertmanager_api import AlertmanagerApi
from services.ingest.api import IngestApi
from services.ingest.bridges import metrics as bridge_metrics
from services.ingest.bridges.mqtt import MqttBridge
from services.ingest.bridges.mqtt_broker import EmbeddedBroker
from services.ingest.bridges.opcua import OpcuaBridge
from services.ingest.bridges.opcua_config import load_opcua_file
from services.ingest.channel import OBSERVATION_CHANNEL, OBSERVATIONS
from services.ingest.config import IngestConfig
from services.ingest.intake import Limits
from services.ingest.permissions import POST_OBSERVATIONS


class Ingest(ServiceInstance):
    def __init__(self, context: ServiceContext, config: IngestConfig) -> None:
        self._publisher = JetStreamPublisher(context.nc, max_in_flight=config.max_in_flight)
        observations = ChannelPublisher(OBSERVATION_CHANNEL, self._publisher)
        self._api = IngestApi(
            context.sites, observations, config, body_timeout_s=context.config.http.body_timeout_s
        )
        self._alertmanager = AlertmanagerApi(
            context.sites,
            self._api.publish,
            config.alertmanager,
            Limits.of(config),
            max_payload=observations.max_payload,
            body_timeout_s=context.config.http.body_timeout_s,
        )
        self._max_body = config.max_body_mb * 1024 * 1024
        self._broker: EmbeddedBroker | None = None
        self._bridge: MqttBridge | None = None
        if config.mqtt.enabled:
            if context.config.workers > 1:
                # Every worker would open the same persistent session (and the embedded broker
                # its port): they would take the session from each other in turn.
                raise ConfigError(
                    "config",
                    None,
                    "ingest.mqtt",
                    "the MQTT bridge runs in one process: use workers: 1, or `safetyhub run ingest`"
                    " in a process of its own",
                )
            broker = config.mqtt.broker
            if config.mqtt.url is None:
                self._broker = EmbeddedBroker(broker.host, broker.port)
            self._bridge = MqttBridge(
                config.mqtt,
                url=config.mqtt.url or f"mqtt://{broker.host}:{broker.port}",
                registry=context.sites,
                publisher=observations,
                js=context.js,
                limits=Limits.of(config),
                base=context.base,
            )

        self._opcua: OpcuaBridge | None = None
        if config.opcua.file is not None:
            if context.config.workers > 1:
                # Every worker would hold its own sessions with each server and report each
                # outage once per worker.
                raise ConfigError(
                    "config",
                    None,
                    "ingest.opcua",
                    "the OPC UA bridge runs in one process: use workers: 1, or `safetyhub run ingest`"
                    " in a process of its own",
                )
            # Read and checked against the site registry now: a bad file stops start-up.
            path = Path(config.opcua.file)
            loaded = load_opcua_file(path if path.is_absolute() else context.base / path, context.sites())
            self._opcua = OpcuaBridge(
                loaded,
                registry=context.sites,
                publisher=observations,
                js=context.js,
                limits=Limits.of(config),
            )

    def add_routes(self, app: web.Application) -> None:
        self._api.add_routes(app)
        self._alertmanager.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        return self._max_body

    def peer_checks(self) -> Mapping[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {}
        if self._bridge is not None:
            checks["mqtt"] = self._bridge.status
        if self._opcua is not None:
            checks.update(self._opcua.peer_checks())
        return checks

    async def start(self) -> None:
        await self._publisher.start()
        if self._broker is not None and self._bridge is not None:
            self._bridge.use_embedded(await self._broker.start())
        if self._bridge is not None:
            self._bridge.start()
        if self._opcua is not None:
            self._opcua.start()

    async def stop(self) -> None:
        # HTTP intake stopped first, so no request is still waiting for an acknowledgement; the
        # bridge stops before the publisher, leaving what it has not acknowledged to the broker.
        if self._bridge is not None:
            await self._bridge.stop()
        if self._opcua is not None:
            await self._opcua.stop()
        if self._broker is not None:
            await self._broker.stop()
        await self._publisher.close()


INGEST: Service[IngestConfig] = Service(
    name="ingest",
    description="HTTP, MQTT, Sparkplug B, OPC UA, Frigate, Alertmanager -> JetStream OBSERVATIONS",
    config=IngestConfig,
    factory=Ingest,
    streams=(OBSERVATIONS,),
    permissions=(POST_OBSERVATIONS,),
    panel=(
        PanelRow("Received", metrics.RECEIVED),
        PanelRow("Accepted", metrics.ACCEPTED),
        PanelRow("Rejected", metrics.REJECTED, by="reason"),
        PanelRow("Duplicates", metrics.DUPLICATES),
        PanelRow("Out of range", metrics.OUT_OF_RANGE, by="kind"),
        PanelRow("Bridged in", bridge_metrics.PUBLISHED, by="bridge"),
        PanelRow("Bridge dead letters", bridge_metrics.DEADLETTERED, by="reason"),
    ),
)
