"""The MQTT bridge's credentials: the password file and the TLS context (CA, client
certificate), read once at construction so a missing file stops start-up, not every reconnect."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

from services.common.errors import ConfigError
from services.ingest.bridges.mqtt_config import MqttConfig


def read_secret(base: Path, name: str, key: str) -> str:
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError("config", None, key, f"cannot read {path}: {err.strerror}") from err


def tls_context(config: MqttConfig, base: Path) -> ssl.SSLContext | None:
    if config.url is None or urlsplit(config.url).scheme != "mqtts":
        return None
    tls = config.tls

    def path(name: str) -> str:
        return str(Path(name) if Path(name).is_absolute() else base / name)

    try:
        context = ssl.create_default_context(cafile=path(tls.ca_file) if tls and tls.ca_file else None)
    except OSError as err:
        raise ConfigError("config", None, "ingest.mqtt.tls.ca_file", str(err)) from err
    if tls is not None and tls.cert_file and tls.key_file:
        try:
            context.load_cert_chain(path(tls.cert_file), path(tls.key_file))
        except (OSError, ssl.SSLError) as err:
            raise ConfigError("config", None, "ingest.mqtt.tls.cert_file", str(err)) from err
    return context
