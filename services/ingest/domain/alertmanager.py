"""Prometheus Alertmanager's webhook (payload version "4") as observations. Pure: the registry,
the mapping and the time are parameters.

Each alert is one observation of the device `am-<fingerprint>` (see alert_devices.py): value 1
while it fires, 0 once resolved, at the site, zone and kind its labels name through the
configured mapping. Its id is derived from the fingerprint and `startsAt` (and `endsAt` once
resolved), and its time is `startsAt` (`endsAt`), so Alertmanager's repeated notifications of
one alert, every `repeat_interval` and after a retry, are the same observation again: the store
keeps it once and the alarm engine, already in alarm, raises nothing new. What cannot be read
is an AlertProblem naming the field (or the label) at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from services.common.contracts.ids import derived_id
from services.common.sites.alert_devices import alert_device
from services.common.sites.registry import SiteRegistry
from services.common.validation import PathPart, locate
from services.ingest.alertmanager_config import AlertmanagerConfig
from services.ingest.domain.checks import ItemError
from services.ingest.domain.contract import ObservationIn
from services.ingest.intake import Limits

VERSION = "4"
# Alertmanager writes a fingerprint as 16 hexadecimal digits (`%016x` of the label set's hash).
Fingerprint = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]
# A firing alert's endsAt is Go's zero time (year 1) or a time Alertmanager expects it to end.
_NO_END = datetime(1970, 1, 1, tzinfo=UTC)
Time = Annotated[datetime, msgspec.Meta(tz=True)]
_MAX_ATTRIBUTE = 256


class Alert(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: Time
    ends_at: Time | None = None
    generator_url: str = msgspec.field(default="", name="generatorURL")
    fingerprint: Fingerprint


class Webhook(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    # Alertmanager adds fields between releases: the ones read here are checked, the rest ignored.
    version: str
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str = ""
    truncated_alerts: int = 0
    alerts: list[Alert]


class _Version(msgspec.Struct, frozen=True):
    version: Any = None


class AlertProblem(Exception):
    """The request cannot be read: the status to answer, the field at fault and why."""

    def __init__(self, status: int, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.status = status
        self.field = field
        self.detail = detail


def decode(body: bytes) -> Webhook:
    """The webhook payload; raises AlertProblem (400 not JSON, 422 not version 4 or not its shape)."""
    try:
        head = msgspec.json.decode(body, type=_Version)
    except msgspec.ValidationError as err:  # a DecodeError too: first
        raise AlertProblem(422, "", "the body is not a JSON object (Alertmanager's webhook payload)") from err
    except msgspec.DecodeError as err:
        raise AlertProblem(400, "", f"the body is not JSON: {err}") from err
    if head.version != VERSION:
        raise AlertProblem(
            422, "version", f'version {head.version!r} is not supported; Alertmanager\'s webhook sends "4"'
        )
    try:
        return msgspec.json.decode(body, type=Webhook)
    except msgspec.ValidationError as err:
        located = locate(err)
        raise AlertProblem(422, _field(located.field), located.message) from err


def _field(path: tuple[PathPart, ...]) -> str:
    """`("alerts", 0, "fingerprint")` -> "alerts[0].fingerprint", as the payload spells it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


@dataclass(frozen=True, slots=True)
class Mapped:
    """The alerts of one notification: the observations, the index of each, and the refused."""

    items: list[ObservationIn]
    positions: list[int]
    errors: list[ItemError]
    # Refused for their site: a label names no site of the caller's tenant (answered 422).
    unknown_sites: list[ItemError]


def observations(
    webhook: Webhook,
    mapping: AlertmanagerConfig,
    registry: SiteRegistry,
    *,
    tenant: str,
    now: datetime,
    limits: Limits,
) -> Mapped:
    out = Mapped([], [], [], [])
    for index, alert in enumerate(webhook.alerts):
        try:
            item = _observation(alert, index, mapping, registry, tenant=tenant, now=now, limits=limits)
            out.items.append(item)
            out.positions.append(index)
        except _Refused as refused:
            (out.unknown_sites if refused.unknown_site else out.errors).append(refused.error)
    return out


class _Refused(Exception):
    def __init__(self, index: int, field: str, detail: str, *, unknown_site: bool = False) -> None:
        super().__init__(detail)
        self.error = ItemError(index, f"alerts[{index}].{field}", detail)
        self.unknown_site = unknown_site


def _observation(
    alert: Alert,
    index: int,
    mapping: AlertmanagerConfig,
    registry: SiteRegistry,
    *,
    tenant: str,
    now: datetime,
    limits: Limits,
) -> ObservationIn:
    labels = alert.labels
    site_label = f"labels.{mapping.site_label}"
    raw_site = labels.get(mapping.site_label)
    if raw_site is None and mapping.site is None:
        raise _Refused(index, site_label, f"the alert has no label '{mapping.site_label}' naming its site")
    site = mapping.sites.get(raw_site, raw_site) if raw_site is not None else mapping.site or ""
    if registry.tenant_of(site) != tenant:
        # One answer whether the site is unknown or another tenant's, as for a posted reading.
        raise _Refused(
            index,
            site_label,
            f"label '{mapping.site_label}' names site '{site[:100]}', which is not a site of this tenant",
            unknown_site=True,
        )
    attributes = {
        "alertname": labels.get("alertname", ""),
        "fingerprint": alert.fingerprint,
        "status": alert.status,
    }
    raw_zone = labels.get(mapping.zone_label)
    if raw_zone is not None:
        zone = mapping.zones.get(raw_zone, raw_zone)
        if registry.zone(site, zone) is None:
            raise _Refused(
                index,
                f"labels.{mapping.zone_label}",
                f"label '{mapping.zone_label}' names zone '{zone[:100]}',"
                f" which is not a zone of site '{site}'",
            )
        attributes["zone"] = zone
    for name in ("severity", "instance", "job"):
        if name in labels:
            attributes[name] = labels[name]
    if "summary" in alert.annotations:
        attributes["summary"] = alert.annotations["summary"]
    if alert.generator_url:
        attributes["generator_url"] = alert.generator_url
    kind = mapping.kinds.get(labels.get(mapping.kind_label, ""), mapping.kind)
    firing = alert.status == "firing"
    when, field = (alert.starts_at, "startsAt") if firing else (alert.ends_at or _NO_END, "endsAt")
    if when <= _NO_END:
        raise _Refused(index, field, "a resolved alert needs the time it ended")
    if when - now > limits.max_future:
        ahead = int(limits.max_future.total_seconds())
        raise _Refused(index, field, f"more than {ahead} s in the future")
    if limits.max_age is not None and now - when > limits.max_age:
        days = limits.max_age.days
        raise _Refused(index, field, f"more than {days} days in the past (ingest.max_age_days)")
    identity = [alert.fingerprint, alert.starts_at.isoformat(), alert.status]
    if not firing:
        identity.append(when.isoformat())
    item = ObservationIn(
        id=derived_id(int(when.timestamp() * 1000), "alertmanager", *identity),
        site=site,
        device=alert_device(alert.fingerprint),
        kind=kind,
        time=when,
        value=1.0 if firing else 0.0,
        unit="1",
        attributes={k: v[:_MAX_ATTRIBUTE] for k, v in attributes.items()},
    )
    try:
        # Built from someone else's labels: checked as a posted observation would be.
        return msgspec.convert(msgspec.to_builtins(item), ObservationIn)
    except msgspec.ValidationError as err:
        located = locate(err)
        raise _Refused(index, f"labels ({_field(located.field)})", located.message) from err
