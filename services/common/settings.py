"""The hub's configuration: one YAML file (optional) plus environment overrides.

Every key has a default, so `safetyhub up` runs with no file at all. The file is validated strictly
(unknown keys rejected) and a bad one stops start-up with file, line and key. This module holds the
kernel's sections; each service declares its own, composed in by the hub's registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

from services.common.config.yaml_loader import load_yaml_file

Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the chosen port is logged and written to the runtime file.
    port: Port = 8080
    # A request's headers must be complete this long after the connection opens (or after the
    # first byte of a following request); else 408 and the connection is closed.
    header_timeout_s: PositiveFloat = 10.0
    # A request body must have arrived this long after the handler starts reading it; else 408.
    body_timeout_s: PositiveFloat = 60.0
    # Open connections per process; one more is answered 503 and closed before it is read.
    max_connections: Positive = 4096
    # An idle keep-alive connection is closed after this long (longer than clients keep theirs).
    keepalive_timeout_s: PositiveFloat = 75.0
    # The hub's address as people reach it (behind a proxy, its public name): the base of the
    # links it sends out, such as a notification's acknowledgement link. "" (the default): none
    # is sent. `safetyhub demo` sets it to its own address when unset.
    public_url: Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")] = ""


class StreamConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Limits of one JetStream stream. Retention is by age and size; the oldest go first."""

    max_age_hours: PositiveFloat = 72.0
    max_bytes_mb: int = -1  # -1: unlimited, bounded by max_age
    # Window in which JetStream drops a second publish with the same Nats-Msg-Id. The store
    # deduplicates forever; this window only saves work. Memory grows with rate x window.
    duplicate_window_s: PositiveFloat = 120.0
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    storage: Literal["file", "memory"] = "file"


class BusConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # None: the embedded nats-server in `up`; required in `run` (or SAFETYHUB_NATS_URL).
    url: str | None = None
    # Port of the embedded nats-server; None picks a free one at each start.
    embedded_port: Port | None = None
    # The kernel's stream; each service's streams add their own key here (see bus/streams.py).
    deadletter: StreamConfig = StreamConfig(max_age_hours=24.0 * 14)


class DatabaseConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    url: str | None = None
    # Port of the embedded PostgreSQL; None picks a free one at each start.
    embedded_port: Port | None = None
    pool_min: Annotated[int, msgspec.Meta(ge=1)] = 2
    pool_max: Annotated[int, msgspec.Meta(ge=1)] = 10


class JwtConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """People's bearer tokens (JWT) from the organisation's identity provider: at most one of
    `hs256_secret_file`, `public_key_file` (RS256 or ES256, PEM) and `jwks_url`. Claims read:
    sub, name, tenant, roles, sites (services/common/auth/tokens.py)."""

    issuer: str | None = None  # checked against `iss` when set
    audience: str | None = None  # checked against `aud` when set; a token with an `aud` needs it
    hs256_secret_file: str | None = None  # relative to the config file
    public_key_file: str | None = None  # relative to the config file
    jwks_url: str | None = None
    jwks_timeout_s: PositiveFloat = 3.0  # one fetch of the JWKS document
    jwks_refresh_s: PositiveFloat = 300.0  # the key set is fetched again after this long
    leeway_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30.0  # clock skew allowed on exp/nbf
    # Tokens of `safetyhub tokens issue`, signed with the hub's own key (kept in PostgreSQL).
    hub_tokens: bool = True


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    jwt: JwtConfig = JwtConfig()


class HubConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The kernel's settings. The hub's registry composes each service's section onto it
    (services/common/kernel/config.py), so a file's `ingest:` is checked as strictly as `http:`."""

    http: HttpConfig = HttpConfig()
    bus: BusConfig = BusConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    # Site files or globs, relative to the config file (or to the working directory without one).
    sites: list[str] = msgspec.field(default_factory=lambda: ["sites/*.yaml"])
    # Seconds between checks of the site files for changes, which are then loaded without a
    # restart (an invalid change is logged and the last valid sites stay in use). 0: never.
    sites_reload_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Worker processes of `safetyhub up`, each running every service and sharing the HTTP port.
    # One is enough for a plant's sensors; more use more cores (see the README's performance).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


H = TypeVar("H", bound=HubConfig)


def load_config(path: Path | None, env: dict[str, str] | None = None, *, schema: type[H]) -> tuple[H, Path]:
    """The configuration (of `schema`, the composed config type) and the directory relative
    paths in it are resolved against."""
    environ = os.environ if env is None else env
    config = load_yaml_file(path, schema) if path is not None else schema()
    base = path.resolve().parent if path is not None else Path.cwd()
    nats_url = environ.get("SAFETYHUB_NATS_URL") or config.bus.url
    db_url = environ.get("SAFETYHUB_DATABASE_URL") or config.database.url
    config = msgspec.structs.replace(
        config,
        bus=msgspec.structs.replace(config.bus, url=nats_url),
        database=msgspec.structs.replace(config.database, url=db_url),
    )
    return config, base


def site_patterns(config: HubConfig, base: Path) -> list[Path]:
    """The configured site paths and globs made absolute (against `base`), as start-up names them."""
    return [Path(pattern) if Path(pattern).is_absolute() else base / pattern for pattern in config.sites]


def site_files(config: HubConfig, base: Path) -> list[Path]:
    """Expand the configured site paths and globs, in a stable order."""
    found: list[Path] = []
    for pattern, root in zip(config.sites, site_patterns(config, base), strict=True):
        if any(ch in pattern for ch in "*?["):
            anchor = Path(root.anchor) if root.is_absolute() else base
            matches = sorted(anchor.glob(str(root.relative_to(anchor))))
            found.extend(m for m in matches if m.is_file())
        else:
            found.append(root)
    return found
