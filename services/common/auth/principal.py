"""Who is calling: the tenant, roles, sites and devices an API key (a machine) or a person's token
grants, and what those roles may do.

The roles are the kernel's; what each may do is declared by the services, one `Permission` per
verb ("post observations"), so the kernel knows no service's verbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["gateway", "viewer", "responder", "operator", "admin", "platform"]
ROLES: tuple[str, ...] = get_args(Role)
# Roles a person's token may carry: `gateway` is what machines post with, never a person.
PERSON_ROLES: tuple[str, ...] = tuple(r for r in ROLES if r != "gateway")
PrincipalKind = Literal["key", "person"]


def most_capable(roles: frozenset[str]) -> Role:
    """The role named in messages for a set of roles: the last of ROLES among them."""
    ranked = [r for r in ROLES if r in roles]
    if not ranked:
        raise ValueError("no known role")
    role: Role = ranked[-1]  # type: ignore[assignment]  # one of ROLES, so a Role
    return role


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
    # A key's id; for a person `person:<subject>`, so logs and sources keep one field.
    key_id: str
    tenant: str
    role: Role  # the most capable of `roles`, named in refusals
    sites: frozenset[str] | None  # None: all sites of the tenant
    # A device's own key: it may post only for these device ids. None: any device of its sites.
    devices: frozenset[str] | None = None
    kind: PrincipalKind = "key"
    # Every role granted (a person's token may carry several); empty means just `role`.
    roles: frozenset[str] = frozenset()
    subject: str | None = None  # a person's `sub` claim
    name: str | None = None  # a person's display name (`name` claim)

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", frozenset({self.role}))

    @property
    def actor(self) -> str:
        """Who acted, for the audit trail: the person's subject, or the key id."""
        return self.subject if self.kind == "person" and self.subject is not None else self.key_id

    def may_access_site(self, site: str, site_tenant: str | None) -> bool:
        if site_tenant != self.tenant:
            return False
        return self.sites is None or site in self.sites

    def may_post_for_device(self, device: str) -> bool:
        return self.devices is None or device in self.devices

    def may(self, permission: Permission) -> bool:
        """Whether one of the caller's roles may do `permission`'s verb."""
        return not self.roles.isdisjoint(permission.roles)
