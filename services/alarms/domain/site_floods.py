"""A site's flood detector inside one unit of work: activations counted, flood edges and rows kept.

quality.py decides when a flood begins and ends; this module records what it decides in the
workset (the site's detector state, the `FloodEdge`s to publish, the `alarm_floods` rows to
write), so the engine only says "an activation happened here" or "the site's timer fell due".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.alarms.adapters.messages import FloodEdge
from services.alarms.domain.quality import FloodEvent, FloodState, flood_timer, record_activation
from services.alarms.domain.workset import FloodRow, SiteKey, Workset


def note_activation(work: Workset, site: SiteKey, at: datetime) -> None:
    """Count one alarm activation at `site`, which may begin a flood."""
    new, events = record_activation(work.floods.get(site, FloodState()), at)
    _record(work, site, new, events)


def fire_timer(work: Workset, site: SiteKey, now: datetime) -> None:
    """End the site's flood if its end fell due by `now` (dated at its due time)."""
    new, event = flood_timer(work.floods[site], now)
    if event is None:
        return
    work.timers_fired += 1
    _record(work, site, new, (event,))


def _record(work: Workset, site: SiteKey, after: FloodState, events: Iterable[FloodEvent]) -> None:
    tenant, site_id = site
    work.floods[site] = after
    work.floods_changed.add(site)
    for event in events:
        work.edges.append(
            FloodEdge(tenant, site_id, event.began, event.at, event.count, event.since, event.activations)
        )
        ended = None if event.began else event.at
        key = (tenant, site_id, event.since)
        work.flood_rows[key] = FloodRow(tenant, site_id, event.since, ended, event.activations)
    if after.since is not None:
        key = (tenant, site_id, after.since)
        row = work.flood_rows.get(key)
        if row is None or row.ended_at is None:
            work.flood_rows[key] = FloodRow(tenant, site_id, after.since, None, after.activations)
