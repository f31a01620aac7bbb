"""Checks on posted observations that types alone cannot express. Pure: time is a parameter.

Typed decoding (contract.py) catches shape errors; here the observation is checked against the
site registry and the caller's key: the key may post for the site, the device is registered there
and measures that kind, the unit matches, the time is not in the future. An observation that
passes is completed from the registry: its unit filled in, and a value outside the registered
range marked as a device fault (kept, quality bad, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from services.common.auth.principal import Principal
from services.common.sites.model import Measure
from services.common.sites.registry import SiteRegistry
from services.ingest.domain.contract import ObservationIn
from services.ingest.permissions import POST_OBSERVATIONS

_GOOD = frozenset({"good", "QUALITY_GOOD"})
# Prefix of the quality reason of a value outside the registered range.
OUT_OF_RANGE = "out_of_range"


class Checked(ObservationIn, frozen=True, kw_only=True):
    """An observation as the hub accepted it, with what the hub judged about it.

    Never decoded from a request: a client cannot send `quality_reason`.
    """

    # Why the quality is not good, e.g. "out_of_range: 5000 outside 0..100 ppm".
    quality_reason: str | None = None


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
    if not principal.may(POST_OBSERVATIONS):
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
) -> ItemError | ObservationIn:
    """The reason `item` is refused, or the item as it is to travel (see `_complete`)."""
    # A registered measure implies its device and site: one lookup for a valid item (every item
    # of a post passes here), the others only to name what is unknown.
    measure = registry.measure(item.site, item.device, item.kind)
    if measure is None:
        return _unregistered(item, index, registry)
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
                " of history (ingest.max_age_days)",
            )
    return _complete(item, measure)


def _unregistered(item: ObservationIn, index: int, registry: SiteRegistry) -> ItemError:
    if registry.tenant_of(item.site) is None:
        return ItemError(index, "site", f"unknown site '{item.site}'")
    if registry.device(item.site, item.device) is None:
        return ItemError(index, "device", f"device '{item.device}' is not registered at site '{item.site}'")
    return ItemError(index, "kind", f"device '{item.device}' does not measure '{item.kind}'")


def _complete(item: ObservationIn, measure: Measure) -> ObservationIn:
    """`item` with the registry's unit, and a value outside the registered range marked bad.

    An out-of-range reading is a fault of the instrument (a broken sensor, a loop at 0 or 24 mA),
    not a measurement: it is kept, so the fault is on record, but with quality bad and the reason,
    so nothing downstream takes 5000 ppm on a 0-100 ppm detector for a gas release. A quality the
    client already sent as bad or uncertain is kept as sent; the reason is added all the same.
    """
    value, bounds = item.value, measure.range
    if value is None or bounds is None or bounds[0] <= value <= bounds[1]:  # the range is inclusive
        return item if item.unit is not None else msgspec.structs.replace(item, unit=measure.unit)
    low, high = bounds
    fields = {name: getattr(item, name) for name in item.__struct_fields__}
    fields["unit"] = measure.unit
    if item.quality in _GOOD:
        fields["quality"] = "bad"
    reason = f"{OUT_OF_RANGE}: {_number(value)} outside {_number(low)}..{_number(high)} {measure.unit}"
    return Checked(**fields, quality_reason=reason)


def _number(value: float) -> str:
    # 5000.0 -> "5000", 12.5 -> "12.5": how a person writes the range in the site file.
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
