"""`keys create` refuses a tenant, site or device the site files do not declare, naming the option."""

from __future__ import annotations

import pytest

from services.common.auth.keys import KeyRequestError
from services.common.sites.registry import SiteRegistry
from services.hub.commands import check_key_scope
from tests.conftest import DEMO_SITES, EXTRA_SITE


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return SiteRegistry.load([DEMO_SITES, EXTRA_SITE])


@pytest.mark.parametrize(
    ("tenant", "sites", "devices", "message"),
    [
        ("acme", None, None, "--tenant: no tenant 'acme'"),
        ("ulsan-refining", ["mipo-aromatics"], None, "--sites: site 'mipo-aromatics' belongs to tenant"),
        ("ulsan-refining", ["nowhere"], None, "--sites: no site 'nowhere'"),
        ("ulsan-refining", None, ["nope-1"], "--devices: no device 'nope-1'"),
        # A device of the tenant, but not at the sites the key is limited to.
        ("ulsan-refining", ["ulsan-refinery-east"], ["gd-cdu1-101"], "--devices: no device 'gd-cdu1-101'"),
        # Another tenant's device.
        ("ulsan-refining", None, ["gd-btx-101"], "--devices: no device 'gd-btx-101'"),
    ],
)
def test_what_the_site_files_do_not_declare_is_refused(
    registry: SiteRegistry,
    tenant: str,
    sites: list[str] | None,
    devices: list[str] | None,
    message: str,
) -> None:
    with pytest.raises(KeyRequestError, match=message):
        check_key_scope(registry, tenant=tenant, sites=sites, devices=devices)


def test_the_error_lists_what_would_have_been_right(registry: SiteRegistry) -> None:
    with pytest.raises(KeyRequestError) as info:
        check_key_scope(registry, tenant="ulsan-refining", sites=["nowhere"], devices=None)

    assert "ulsan-refinery" in str(info.value) and "ulsan-refinery-east" in str(info.value)


@pytest.mark.parametrize(
    ("sites", "devices"),
    [
        (None, None),
        (["ulsan-refinery"], None),
        (["ulsan-refinery", "ulsan-refinery-east"], ["gd-cdu1-101", "gd-hcr1-101"]),
        (None, ["gd-hcr1-101"]),  # any device of the tenant when no site limit is given
    ],
)
def test_what_the_site_files_declare_passes(
    registry: SiteRegistry, sites: list[str] | None, devices: list[str] | None
) -> None:
    check_key_scope(registry, tenant="ulsan-refining", sites=sites, devices=devices)
