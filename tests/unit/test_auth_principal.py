"""What an API key grants: which sites it reaches, and what its role may do of each service's verbs."""

from __future__ import annotations

import pytest

from services.common.auth.principal import ROLES, Permission, Principal, Role
from services.hub.registry import REGISTRY

TENANT = "ulsan-refining"


def key(role: Role = "gateway", sites: frozenset[str] | None = None) -> Principal:
    return Principal(key_id="k1", tenant=TENANT, role=role, sites=sites)


def test_a_key_without_a_site_list_reaches_every_site_of_its_tenant() -> None:
    assert key().may_access_site("ulsan-refinery", TENANT)
    assert key().may_access_site("ulsan-refinery-east", TENANT)


def test_a_key_never_reaches_a_site_of_another_tenant() -> None:
    assert not key().may_access_site("mipo-aromatics", "mipo-petrochem")
    # Even when the other tenant's site is named in the key's list.
    assert not key(sites=frozenset({"mipo-aromatics"})).may_access_site("mipo-aromatics", "mipo-petrochem")


def test_an_unknown_site_is_not_reachable() -> None:
    assert not key().may_access_site("busan-refinery", None)


def test_a_key_with_a_site_list_reaches_only_those_sites() -> None:
    limited = key(sites=frozenset({"ulsan-refinery"}))

    assert limited.may_access_site("ulsan-refinery", TENANT)
    assert not limited.may_access_site("ulsan-refinery-east", TENANT)


def test_an_empty_site_list_reaches_no_site() -> None:
    assert not key(sites=frozenset()).may_access_site("ulsan-refinery", TENANT)


# What each role may do, as the README's role table says. Keyed by role: a role added to ROLES
# without a row here fails below instead of silently getting no rights.
MAY = {
    "gateway": {"observations.post"},
    "viewer": {"observations.read", "alarms.read", "incidents.read", "snapshots.read"},
    "responder": {"observations.read", "alarms.read", "incidents.read", "incidents.work", "snapshots.read"},
    "operator": {
        "observations.read",
        "alarms.read",
        "alarms.act",
        "incidents.read",
        "incidents.work",
        "incidents.assign",
        "snapshots.read",
    },
    "admin": {
        "observations.post",
        "observations.read",
        "alarms.read",
        "alarms.act",
        "incidents.read",
        "incidents.work",
        "incidents.assign",
        "snapshots.read",
        "audit.read",
        "feed.policy",
        "feed.exports",
        "escalation.endpoints",
        "escalation.deliveries",
        "escalation.policies",
        "escalation.maintenance",
    },
    "platform": set(),
}


@pytest.mark.parametrize("role", ROLES)
def test_what_each_role_may_do_is_what_the_services_declare(role: Role) -> None:
    granted = {p.verb for p in REGISTRY.permissions() if key(role).may(p)}
    assert granted == MAY[role]


def test_every_verb_a_service_declares_is_decided_for_every_role() -> None:
    declared = {p.verb for p in REGISTRY.permissions()}
    assert set().union(*MAY.values()) == declared
    assert len(declared) == len(REGISTRY.permissions()), "a verb is declared twice"


def test_a_permission_naming_an_unknown_role_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="superuser"):
        Permission("observations.delete", frozenset({"admin", "superuser"}))
