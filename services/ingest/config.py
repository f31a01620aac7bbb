"""The `ingest:` section of the hub's config."""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.settings import Positive, PositiveFloat
from services.ingest.alertmanager_config import AlertmanagerConfig
from services.ingest.bridges.mqtt_config import MqttConfig
from services.ingest.bridges.opcua_config import OpcuaConfig


class IngestConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    max_items: Positive = 10_000
    max_body_mb: Positive = 32
    # Readings stamped further ahead than this are refused: a device clock that runs fast would
    # otherwise write observations into days that have not happened yet.
    max_future_s: PositiveFloat = 300.0
    # Readings older than this many days are refused: keep it at or below the history the store
    # keeps (store.retention_days), which would drop them. 0 refuses none.
    max_age_days: Annotated[int, msgspec.Meta(ge=0)] = 30
    # Observations in flight to JetStream at once (per process), the back-pressure bound.
    max_in_flight: Positive = 20_000
    # The OPC UA bridge (off unless `file` names its servers and nodes).
    opcua: OpcuaConfig = OpcuaConfig()
    # The MQTT bridge (off unless a broker `url` is given or `embedded` is true).
    mqtt: MqttConfig = MqttConfig()
    # POST /v1/integrations/alertmanager: how an alert's labels name its site, zone and kind.
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()
