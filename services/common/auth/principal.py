"""Who is calling: the tenant, role, sites and devices an API key grants, and what its role may do.

The roles are the kernel's; what each may do is declared by the services, one `Permission` per
verb ("post observations"), so the kernel knows no service's verbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["gateway", "viewer", "responder", "operator", "admin", "platform"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True, slots=True)
class Permission:
    """A verb of one service and the roles that may do it, e.g. ("observations.post", gateway)."""

    verb: str
    roles: frozenset[str]
    # What the README's role table says the verb lets a role do ("post observations").
    summary: str = ""

    def __post_init__(self) -> None:
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"{self.verb}: unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")


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

    def may(self, permission: Permission) -> bool:
        """Whether the key's role may do `permission`'s verb."""
        return self.role in permission.roles
