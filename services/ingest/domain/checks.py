"""Checks on posted observations that types alone cannot express. Pure: time is a parameter.

Typed decoding (contract.py) catches shape errors; here the observation is checked against the
site registry and the caller's key: the key may post for the site, the device is registered there
and measures that kind, the unit matches, the time is not in the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.auth.principal import Principal
from services.common.sites.registry import SiteRegistry
from services.ingest.domain.contract import ObservationIn

_GOOD = frozenset({"good", "QUALITY_GOOD"})


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why item `index` of a request was refused, naming the field."""

    index: int
    field: str
    detail: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """The key may not post for this item's site: the whole request is refused (403)."""

    index: int
    site: str
    reason: str
    field: str = "site"


def authorize(
    item: ObservationIn, index: int, principal: Principal, registry: SiteRegistry
) -> Refusal | None:
    if not principal.may_ingest:
        return Refusal(index, item.site, f"role '{principal.role}' may not post observations")
    if not principal.may_access_site(item.site, registry.tenant_of(item.site)):
        # One answer whether the site is another tenant's, outside the key's sites or does not
        # exist: telling these apart would tell a caller which site ids other tenants have.
        reason = f"this key may not post for site '{item.site}'"
        if principal.sites is not None:
            reason += f"; it may post for sites {sorted(principal.sites)}"
        return Refusal(index, item.site, reason)
    if not principal.may_post_for_device(item.device):
        reason = f"this key may post only for devices {sorted(principal.devices or [])}"
        return Refusal(index, item.site, reason, field="device")
    return None


def check(
    item: ObservationIn,
    index: int,
    registry: SiteRegistry,
    now: datetime,
    max_future: timedelta,
    *,
    max_age: timedelta | None = None,
) -> ItemError | None:
    if registry.tenant_of(item.site) is None:
        return ItemError(index, "site", f"unknown site '{item.site}'")
    if registry.device(item.site, item.device) is None:
        return ItemError(index, "device", f"device '{item.device}' is not registered at site '{item.site}'")
    measure = registry.measure(item.site, item.device, item.kind)
    if measure is None:
        return ItemError(index, "kind", f"device '{item.device}' does not measure '{item.kind}'")
    if item.unit is not None and item.unit != measure.unit:
        return ItemError(
            index, "unit", f"'{item.kind}' of '{item.device}' is in '{measure.unit}', not '{item.unit}'"
        )
    if item.value is None and item.confidence is None and item.quality in _GOOD:
        # A device reporting a fault (quality bad or uncertain) may have no value to give.
        return ItemError(
            index, "value", "a good observation needs a value (reading) or a confidence (detection)"
        )
    if item.time is not None:
        if item.time.tzinfo is None:
            return ItemError(index, "time", "time needs a UTC offset, e.g. 2026-11-22T09:15:00+09:00")
        if item.time - now > max_future:
            return ItemError(
                index, "time", f"time is more than {int(max_future.total_seconds())} s in the future"
            )
        if max_age is not None and now - item.time > max_age:
            # The store would drop it within the hour: refusing it now tells the gateway.
            return ItemError(
                index,
                "time",
                f"time is more than {max_age.days} days in the past; the hub keeps {max_age.days} days"
                " of history (store.retention_days)",
            )
    return None
