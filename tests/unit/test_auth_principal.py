"""What an API key grants: which sites it reaches, and who may post or read observations."""

from __future__ import annotations

import pytest

from services.common.auth.principal import ROLES, Principal, Role

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


@pytest.mark.parametrize(
    ("role", "ingest", "read"),
    [
        ("gateway", True, False),
        ("viewer", False, True),
        ("responder", False, True),
        ("operator", False, True),
        ("admin", True, True),
        ("platform", False, False),
    ],
)
def test_what_each_role_may_do_with_observations(role: Role, ingest: bool, read: bool) -> None:
    assert (key(role).may_ingest, key(role).may_read_observations) == (ingest, read)


def test_every_role_is_covered_above() -> None:
    assert set(ROLES) == {"gateway", "viewer", "responder", "operator", "admin", "platform"}
