"""The demo shows the city feed at work: its plants share `redacted` unless the config says
otherwise."""

from __future__ import annotations

import msgspec

from services.common.sites.registry import SiteRegistry
from services.feed.app import FEED
from services.feed.config import FeedConfig, SitePolicy
from services.feed.domain.policy import Level
from services.hub.demo import with_demo_sharing
from services.hub.registry import REGISTRY
from tests.conftest import DEMO_SITES


def test_every_demo_plant_shares_redacted_and_no_city_site_does() -> None:
    registry = SiteRegistry.load([DEMO_SITES])
    config = with_demo_sharing(REGISTRY.config_type()(), registry)

    policies = {(p.tenant, p.site): p.level for p in FEED.section(config).policies}
    plants = {(s.tenant, s.id) for s in registry.sites if s.kind == "plant"}
    assert ("ulsan-refining", "ulsan-refinery") in policies
    assert set(policies) == plants
    assert set(policies.values()) == {Level.REDACTED}


def test_policies_in_the_config_are_left_as_they_are() -> None:
    registry = SiteRegistry.load([DEMO_SITES])
    mine = SitePolicy(tenant="ulsan-refining", site="ulsan-refinery", level=Level.COUNTS)
    config = msgspec.structs.replace(REGISTRY.config_type()(), feed=FeedConfig(policies=[mine]))

    assert FEED.section(with_demo_sharing(config, registry)).policies == [mine]
