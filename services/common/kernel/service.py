"""What a service declares to the hub, and what the hub hands it when it runs.

A service is one package with one declaration, a `Service`: its name, its config section (a
msgspec Struct, found in the config file under the service's name), the streams it owns, those
it consumes and those of others it publishes to, its migrations, the permissions its routes
check, the paths it serves without a key, its row of the live view, and a factory. The hub
builds the running `ServiceInstance` from a `ServiceContext` and calls its hooks: routes,
readiness checks, start, stop. The kernel knows no service: the hub's registry lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import asyncpg
import msgspec
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client.metrics import MetricWrapperBase

from services.common.auth.principal import Permission
from services.common.bus.streams import StreamDef
from services.common.http.ops import ReadinessCheck
from services.common.settings import HubConfig
from services.common.sites.registry import SiteRegistry

C = TypeVar("C", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a running service gets from the kernel: one of each per process, shared."""

    config: HubConfig
    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext
    # The site registry in use; call it per request: a reload swaps the object.
    sites: Callable[[], SiteRegistry]
    # The directory relative paths of the config are resolved against (the config file's).
    base: Path = field(default_factory=Path.cwd)
    # The file the config was read from, for a service that reloads its section when it changes;
    # None: a config built in code, nothing to reload.
    config_file: Path | None = None


class ServiceInstance:
    """A service running in this process. Every hook does nothing unless the service overrides it."""

    def add_routes(self, app: web.Application) -> None:
        """Add the service's HTTP routes (built before `start`, served after it)."""

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        """Extra /readyz checks, by name (the kernel checks NATS, PostgreSQL and migrations)."""
        return {}

    def peer_checks(self) -> Mapping[str, ReadinessCheck]:
        """Peers the service reads from (a plant's MQTT broker), by name: reported by /readyz
        under `peers` but not counted toward ready, so a peer that is down leaves the rest of
        the hub in service."""
        return {}

    @property
    def max_body_bytes(self) -> int:
        """The largest request body a route of the service reads (the app's limit is the largest)."""
        return 0

    async def start(self) -> None:
        """Start consumers and background work; the kernel's connections are up."""

    async def stop(self) -> None:
        """Stop taking work and finish what is in hand (HTTP intake has stopped already)."""


@dataclass(frozen=True, slots=True)
class PanelRow:
    """One row of the live view: a label and the metric it totals (summed over its labels),
    with a breakdown by the label `by` when given."""

    label: str
    metric: MetricWrapperBase
    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelComponent:
    """A part of the kernel with tables of its own (the key store, the outbox)."""

    name: str
    migrations: str  # the package holding `migrations/NNNN_name.sql`
    # What its routes (served by the hub whatever services run) let a role do.
    permissions: tuple[Permission, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False)
class Service(Generic[C]):
    """One service's declaration; `name` is also its config key and its `run` argument."""

    name: str
    description: str
    config: type[C]
    factory: Callable[[ServiceContext, C], ServiceInstance]
    streams: tuple[StreamDef, ...] = ()  # owned: declared, configured under bus.<config_key>
    consumes: tuple[StreamDef, ...] = ()  # owned by another service; ensured when this one runs
    # Owned by another service, written to by this one (the video service's detections go on the
    # observations stream): ensured when this one runs alone, so its outbox has somewhere to go.
    publishes: tuple[StreamDef, ...] = ()
    migrations: str | None = None  # the package holding `migrations/`; None: no tables
    permissions: tuple[Permission, ...] = ()
    public_paths: frozenset[str] = frozenset()
    # Paths under these take no key or token: the route checks its own credential (a signed link).
    public_prefixes: tuple[str, ...] = ()
    panel: tuple[PanelRow, ...] = ()

    def section(self, config: HubConfig) -> C:
        """The service's config section, typed; its defaults when `config` was built without it."""
        value = getattr(config, self.name, None)
        if value is None:
            return self.config()
        if not isinstance(value, self.config):
            raise TypeError(f"config.{self.name} is a {type(value).__name__}, not a {self.config.__name__}")
        return value

    def create(self, context: ServiceContext) -> ServiceInstance:
        return self.factory(context, self.section(context.config))
