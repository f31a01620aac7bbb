"""The hub's services, one line each, and what `up`, `run`, `migrate` and the live view derive.

Adding a service is one package declaring a `Service` (services/<name>/app.py) and one line in
`SERVICES`. Everything else (its config section, streams, migrations, routes, permissions,
readiness, live-view rows, the `run` choices, the k8s check) is read from the declaration.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.alarms.app import ALARMS
from services.common.audit.api import READ_AUDIT
from services.common.auth.principal import Permission
from services.common.bus.streams import DEADLETTER_STREAM, StreamSpec, stream_specs
from services.common.db import migrations
from services.common.kernel import KernelComponent, Service, compose_config
from services.common.settings import HubConfig, load_config
from services.escalation.app import ESCALATION
from services.feed.app import FEED
from services.incidents.app import INCIDENTS
from services.ingest.app import INGEST
from services.store.app import STORE
from services.video.app import VIDEO

# Parts of the kernel with tables of their own: migrated whatever services run.
KERNEL: tuple[KernelComponent, ...] = (
    KernelComponent(name="auth", migrations="services.common.auth"),
    KernelComponent(name="outbox", migrations="services.common.outbox"),
    KernelComponent(name="audit", migrations="services.common.audit", permissions=(READ_AUDIT,)),
)

# In start order; stopped in reverse.
SERVICES: tuple[Service[Any], ...] = (
    INGEST,
    STORE,
    ALARMS,
    INCIDENTS,
    ESCALATION,
    VIDEO,
    FEED,
)

# What the hub itself serves without a key (the services add theirs).
HUB_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})


@dataclass(frozen=True, eq=False)
class Registry:
    kernel: tuple[KernelComponent, ...] = KERNEL
    services: tuple[Service[Any], ...] = SERVICES

    def __post_init__(self) -> None:
        names = [s.name for s in self.services] + [k.name for k in self.kernel]
        if len(set(names)) != len(names):
            raise ValueError(f"two services or kernel components share a name: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    def select(self, names: Iterable[str] | None = None) -> tuple[Service[Any], ...]:
        """The services named (all when None), in registry order; an unknown name raises ValueError."""
        if names is None:
            return self.services
        wanted = set(names)
        unknown = wanted - set(self.names)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(self.names)}")
        return tuple(s for s in self.services if s.name in wanted)

    def config_type(self) -> type[HubConfig]:
        """HubConfig with every registered service's section (and every stream's `bus:` key)."""
        return _composed(self.services)

    def load_config(self, path: Path | None, env: dict[str, str] | None = None) -> tuple[HubConfig, Path]:
        return load_config(path, env, schema=self.config_type())

    def migrations(self, services: Sequence[Service[Any]] | None = None) -> list[migrations.Migration]:
        """The kernel's migrations and those of `services` (all when None)."""
        chosen = self.services if services is None else services
        sources = [(k.name, k.migrations) for k in self.kernel]
        sources += [(s.name, s.migrations) for s in chosen if s.migrations is not None]
        return [m for component, package in sources for m in migrations.discover(component, package)]

    def streams(self, config: HubConfig, services: Sequence[Service[Any]] | None = None) -> list[StreamSpec]:
        """The streams `services` (all when None) own, consume or publish to, and the kernel's
        DEADLETTER, each as its owner declares it."""
        chosen = self.services if services is None else services
        owned = {stream.name: stream for s in self.services for stream in s.streams}
        used = [stream for s in chosen for stream in (*s.streams, *s.consumes, *s.publishes)]
        wanted = [owned.get(stream.name, stream) for stream in used]
        return stream_specs(config.bus, [*wanted, DEADLETTER_STREAM])

    def public_paths(self, services: Sequence[Service[Any]] | None = None) -> frozenset[str]:
        chosen = self.services if services is None else services
        return HUB_PUBLIC_PATHS.union(*(s.public_paths for s in chosen))

    def public_prefixes(self, services: Sequence[Service[Any]] | None = None) -> tuple[str, ...]:
        chosen = self.services if services is None else services
        return tuple(prefix for s in chosen for prefix in s.public_prefixes)

    def permissions(self) -> tuple[Permission, ...]:
        kernel = tuple(p for k in self.kernel for p in k.permissions)
        return kernel + tuple(p for s in self.services for p in s.permissions)


@functools.cache
def _composed(services: tuple[Service[Any], ...]) -> type[HubConfig]:
    return compose_config(
        [(s.name, s.config) for s in services], [stream for s in services for stream in s.streams]
    )


REGISTRY = Registry()
