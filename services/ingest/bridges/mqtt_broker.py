"""The embedded MQTT broker (amqtt), for a hub that runs without a plant broker (`up`, the demo).

It listens on loopback only and keeps sessions in memory: a client with `clean_session` off gets
what was published for it while it was away, as long as the hub process runs. A client must give a
user name (any: the broker is on loopback, reachable only from this machine), because amqtt keeps
nothing for an anonymous session.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from amqtt.broker import Broker

from services.common.logging import get_logger

log = get_logger(__name__)

_ANONYMOUS_PLUGIN = "amqtt.plugins.authentication.AnonymousAuthPlugin"


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self._host = host
        self._port = port
        self._broker: Broker | None = None
        self.url = ""

    async def start(self) -> str:
        """Start listening; the broker's mqtt:// URL (a free port is chosen when `port` is 0)."""
        # amqtt and its state machine log every session step at INFO: keep their warnings only.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        port = self._port or _free_port(self._host)
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{port}"}},
            "plugins": {_ANONYMOUS_PLUGIN: {"allow_anonymous": False}},
        }
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        self.url = f"mqtt://{self._host}:{port}"
        log.info("mqtt_broker_started", url=self.url)
        return self.url

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        # amqtt reports its own cancelled tasks as errors while shutting down; they are not.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        try:
            await asyncio.wait_for(broker.shutdown(), timeout=5.0)
        except Exception as err:  # shutdown is best effort: the process is stopping anyway
            log.warning("mqtt_broker_stop_failed", error=repr(err))
        log.info("mqtt_broker_stopped", url=self.url)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
