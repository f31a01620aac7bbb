"""What the timers send when rows fall due: a delayed event released under the policy then in
force, and a closed site-hour's counts as `kpi` events."""

from __future__ import annotations

from datetime import timedelta

from services.common.bus.publisher import OutgoingMessage
from services.common.logging import get_logger
from services.feed import metrics
from services.feed.adapters.events import feed_event
from services.feed.domain.policy import Kind, PolicyInForce
from services.feed.domain.projection import project_counts
from services.feed.repository import CountedHour, ExportRow, Pending

log = get_logger(__name__)


def release(item: Pending, in_force: PolicyInForce) -> ExportRow | None:
    """A delayed event leaves only if the policy now in force lets every field of it leave:
    a policy tightened (or set to none) while it waited keeps it in."""
    export = item.export
    allowed = in_force.policy.allowed(Kind(export.kind))
    if not set(export.fields) <= allowed:
        metrics.WITHHELD.labels(export.kind, str(in_force.policy.level)).inc()
        log.info("feed_delayed_withheld", tenant=export.tenant, site=export.site, event_id=export.event_id)
        return None
    return export


def counts(hour: CountedHour, in_force: PolicyInForce) -> list[tuple[OutgoingMessage, ExportRow]]:
    """One `kpi` event per zone of a closed hour, if the policy now in force shares counts."""
    sent: list[tuple[OutgoingMessage, ExportRow]] = []
    end = hour.hour + timedelta(hours=1)
    for zone, (incidents, alarms) in sorted(hour.zones.items()):
        shared = project_counts(zone, hour.hour, incidents, alarms, in_force.policy)
        if shared is None:
            metrics.WITHHELD.labels(str(Kind.KPI), str(in_force.policy.level)).inc()
            continue
        out = feed_event(
            Kind.KPI,
            shared,
            tenant=hour.tenant,
            site=hour.site,
            source_id=f"{hour.hour.isoformat()}/{zone}",
            at=end,
            policy_version=in_force.version,
        )
        export = ExportRow(
            out.id,
            hour.tenant,
            hour.site,
            str(Kind.KPI),
            zone,
            in_force.version,
            str(in_force.policy.level),
            tuple(sorted(shared)),
            end,
        )
        sent.append((out.message, export))
    return sent
