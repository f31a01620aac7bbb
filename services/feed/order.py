"""Each incident's events reach FEED in the order of its versions, whatever order its changes
arrive in.

An incident's `version` rises with every change (it is the incident's ETag), and every change on
INCIDENTS carries the incident as it left it. The feed keeps the last version it decided on per
incident (`feed_incident_versions`), locked and updated in the unit of work that emits the events:
a change older than that arriving late (a batch that a leader held when its session ended,
redelivered after newer ones) is counted and dropped with a log line, never published after the
newer state. Changes of one version (several changes of one batch of fusion carry the incident as
the batch left it) all pass. A version of 0 (a message from before incidents carried one) is not
guarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg

from services.common.logging import get_logger
from services.feed import metrics
from services.feed.adapters.read import INCIDENTS_IN, incident_facts
from services.feed.domain.facts import IncidentFacts

log = get_logger(__name__)
Key = tuple[str, str]  # tenant, incident

# Locks the rows of the batch's incidents (created at 0: nothing decided yet) and reads their
# versions. Locked in key order, so two units of work on the same incidents (the leader before a
# handover still finishing one) wait for each other, never deadlock, and the second reads what the
# first committed.
_LOCK = """
INSERT INTO feed_incident_versions AS v (tenant, incident_id, version)
SELECT tenant, incident_id, 0 FROM unnest($1::text[], $2::text[]) AS u (tenant, incident_id)
ORDER BY tenant, incident_id
ON CONFLICT (tenant, incident_id) DO UPDATE SET version = v.version
RETURNING tenant, incident_id, version
"""
_SET = """
UPDATE feed_incident_versions AS v SET version = u.version, updated_at = clock_timestamp()
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u (tenant, incident_id, version)
WHERE v.tenant = u.tenant AND v.incident_id = u.incident_id
"""


@dataclass(frozen=True, slots=True)
class Versioned:
    """An incident change and the version the incident reached with it."""

    facts: IncidentFacts
    version: int


def read_versioned(msg: Msg) -> Versioned:
    """Decoder for the INCIDENTS consumer (undecodable or off its subject: Poison)."""
    change = INCIDENTS_IN.decode(msg)
    env = change.envelope
    INCIDENTS_IN.check_subject(msg, env.tenant, env.site, change.incident_id)
    return Versioned(incident_facts(change), change.incident.version)


def in_order(items: Sequence[tuple[Key, int]], last: Mapping[Key, int]) -> tuple[list[int], dict[Key, int]]:
    """Which of `items` (incident, version), in the order given, may leave after the versions
    `last` decided before: the indices of those, and each incident's version after them (only
    the incidents that moved). An item older than what was decided, or than an item before it,
    is left out; one of the same version passes."""
    decided = dict(last)
    moved: dict[Key, int] = {}
    kept = []
    for index, (key, version) in enumerate(items):
        if version <= 0:
            kept.append(index)
            continue
        if version < decided.get(key, 0):
            continue
        kept.append(index)
        if version > decided.get(key, 0):
            decided[key] = moved[key] = version
    return kept, moved


async def admit(conn: asyncpg.Connection, items: Sequence[Versioned]) -> list[int]:
    """The indices of `items` that keep each incident's order (see `in_order`), the versions they
    bring recorded; the others are counted and logged, to be acked without an effect."""
    keys = sorted({(i.facts.tenant, i.facts.incident_id) for i in items if i.version > 0})
    if not keys:
        return list(range(len(items)))
    rows = await conn.fetch(_LOCK, [t for t, _ in keys], [i for _, i in keys])
    last = {(r["tenant"], r["incident_id"]): r["version"] for r in rows}
    kept, moved = in_order([((i.facts.tenant, i.facts.incident_id), i.version) for i in items], last)
    if moved:
        await conn.execute(_SET, [t for t, _ in moved], [i for _, i in moved], [v for v in moved.values()])
    if len(kept) < len(items):
        taken = set(kept)
        for index, item in enumerate(items):
            if index in taken:
                continue
            facts = item.facts
            key = (facts.tenant, facts.incident_id)
            metrics.OUT_OF_ORDER.inc()
            log.warning(
                "feed_change_out_of_order_dropped",
                tenant=facts.tenant,
                site=facts.site,
                incident_id=facts.incident_id,
                change=facts.change,
                event_id=facts.event_id,
                version=item.version,
                decided=moved.get(key, last.get(key, 0)),
            )
    return kept
