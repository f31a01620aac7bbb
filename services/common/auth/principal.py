"""Who is calling: the tenant, role, sites and devices an API key grants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["gateway", "viewer", "responder", "operator", "admin", "platform"]
ROLES: tuple[str, ...] = get_args(Role)

# What each role may do with observations. Later services add their own verbs.
_INGEST: frozenset[str] = frozenset({"gateway", "admin"})
_READ_OBSERVATIONS: frozenset[str] = frozenset({"viewer", "responder", "operator", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str
    role: Role
    sites: frozenset[str] | None  # None: all sites of the tenant
    # A device's own key: it may post only for these device ids. None: any device of its sites.
    devices: frozenset[str] | None = None

    def may_access_site(self, site: str, site_tenant: str | None) -> bool:
        if site_tenant != self.tenant:
            return False
        return self.sites is None or site in self.sites

    def may_post_for_device(self, device: str) -> bool:
        return self.devices is None or device in self.devices

    @property
    def may_ingest(self) -> bool:
        return self.role in _INGEST

    @property
    def may_read_observations(self) -> bool:
        return self.role in _READ_OBSERVATIONS
