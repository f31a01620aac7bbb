"""The alarm tables as a workset: lock and load what a unit of work touches, write back what changed.

Concurrency by row locks, not versions: a unit of work (a batch of observations, a timer pass, an
operator's request) first locks the rows of its sites in alarm_sites, in (tenant, site) order, and
holds them to its commit. Every unit of work that writes a point holds its site's lock, so the
site lock alone serialises the writers of a point: its row is then read without a row lock of its
own (locking a thousand point rows per batch dirtied each of their pages once more for nothing),
and what the previous holder committed is what the read sees. So work on one site is serialised
across workers and processes, an operator's ack and an observation never overwrite each other's
update of a point, and with one kind of lock taken in one order, two units of work never deadlock.

Write-back is by what changed: a point whose shown columns (state, flags, rule fields) are as
loaded gets only its `due` and `engine_state` updated, and a point whose readings changed nothing
but the record of what was applied to it gets even that only every `PROGRESS_EVERY` of observation
time (workset.py says why that is safe).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from services.alarms.adapters.messages import transition_id
from services.alarms.domain.engine import Engine
from services.alarms.domain.model import PointId
from services.alarms.domain.quality import next_flood_due
from services.alarms.domain.workset import (
    CONFIRMED,
    VOTE_RULE,
    Emitted,
    Loaded,
    SiteKey,
    Workset,
    decode_flood,
    decode_record,
    encode_flood,
    encode_record,
    is_latched,
)

# Lists of ids and flags travel joined by this (one text per row: unnest flattens nested arrays).
_SEP = "\x1f"

_ENSURE_SITES = """
INSERT INTO alarm_sites (tenant, site)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
"""
_LOCK_SITES = """
SELECT s.tenant, s.site, s.engine_state
FROM alarm_sites s JOIN unnest($1::text[], $2::text[]) AS k(tenant, site) USING (tenant, site)
ORDER BY s.tenant, s.site
FOR UPDATE OF s
"""
_TRY_LOCK_SITE = """
SELECT engine_state FROM alarm_sites WHERE tenant = $1 AND site = $2 FOR UPDATE SKIP LOCKED
"""
# Read under the site's lock (see above): no row lock of its own.
_LOAD_POINTS = """
SELECT alarm_id, engine_state, condition, priority, alarm_class, latched FROM alarm_points
WHERE tenant = $1 AND site = $2 AND alarm_id = ANY($3::text[])
"""
_DUE_POINTS = """
SELECT alarm_id FROM alarm_points WHERE tenant = $1 AND site = $2 AND due <= $3
"""
_DUE_SITES = """
SELECT tenant, site FROM alarm_points WHERE due <= $1
UNION
SELECT tenant, site FROM alarm_sites WHERE due <= $1
LIMIT $2
"""
_WRITE_POINTS = """
INSERT INTO alarm_points (tenant, site, alarm_id, device, rule_id, condition, priority, alarm_class,
                          state, active, latched, shelved_until, flags, changed_at, due, engine_state,
                          snapshot)
SELECT t, s, a, d, r, c, p, k, st, ac, l, su, string_to_array(f, $18), ch, du, e, sn
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::boolean[], $11::boolean[],
            $12::timestamptz[], $13::text[], $14::timestamptz[], $15::timestamptz[], $16::bytea[],
            $17::text[])
     AS x(t, s, a, d, r, c, p, k, st, ac, l, su, f, ch, du, e, sn)
ON CONFLICT (tenant, site, alarm_id) DO UPDATE SET
    priority = EXCLUDED.priority, alarm_class = EXCLUDED.alarm_class, condition = EXCLUDED.condition,
    state = EXCLUDED.state, active = EXCLUDED.active, latched = EXCLUDED.latched,
    shelved_until = EXCLUDED.shelved_until, flags = EXCLUDED.flags, changed_at = EXCLUDED.changed_at,
    due = EXCLUDED.due, engine_state = EXCLUDED.engine_state, snapshot = EXCLUDED.snapshot
"""
_WRITE_ENGINE_STATES = """
UPDATE alarm_points p SET due = x.du, engine_state = x.e
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[]) AS x(t, s, a, du, e)
WHERE p.tenant = x.t AND p.site = x.s AND p.alarm_id = x.a
"""
_WRITE_ORPHAN = """
UPDATE alarm_points SET due = $4, engine_state = $5 WHERE tenant = $1 AND site = $2 AND alarm_id = $3
"""
_WRITE_TRANSITIONS = """
INSERT INTO alarm_transitions (id, tenant, site, alarm_id, rule_id, priority, alarm_class, at,
                               old_state, new_state, active, observation_ids, timer, actor, action,
                               reason, flags, activation, reannunciation, returned, ack_latency_ms,
                               entered_overlay)
SELECT i, t, s, a, r, p, k, at, o, n, ac, string_to_array(ob, $23), ti, pe, act, re,
       string_to_array(f, $23), av, ra, rt, al, eo
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::boolean[],
            $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
            $18::boolean[], $19::boolean[], $20::boolean[], $21::bigint[], $22::text[])
     AS x(i, t, s, a, r, p, k, at, o, n, ac, ob, ti, pe, act, re, f, av, ra, rt, al, eo)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
_WRITE_SITES = """
UPDATE alarm_sites s SET engine_state = k.state, due = k.due
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[]) AS k(tenant, site, state, due)
WHERE s.tenant = k.tenant AND s.site = k.site
"""
_WRITE_FLOODS = """
INSERT INTO alarm_floods (tenant, site, began_at, ended_at, activations)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::integer[])
ON CONFLICT (tenant, site, began_at) DO UPDATE SET
    ended_at = EXCLUDED.ended_at, activations = EXCLUDED.activations
"""


async def lock_sites(conn: asyncpg.Connection, sites: Iterable[SiteKey], work: Workset) -> None:
    """Lock the sites' rows (created on first use) and load their flood detectors into `work`."""
    keys = sorted(set(sites))
    if not keys:
        return
    tenants, names = [k[0] for k in keys], [k[1] for k in keys]
    rows = await conn.fetch(_LOCK_SITES, tenants, names)
    if len(rows) < len(keys):
        # A site seen for the first time: its row is created, then all are locked in order. (An
        # INSERT before every lock cost a statement per batch for rows that are never deleted.)
        await conn.execute(_ENSURE_SITES, tenants, names)
        rows = await conn.fetch(_LOCK_SITES, tenants, names)
    for row in rows:
        if row["engine_state"] is not None:
            work.floods[(row["tenant"], row["site"])] = decode_flood(row["engine_state"])


async def try_lock_site(conn: asyncpg.Connection, site: SiteKey, work: Workset) -> bool:
    """Lock one site's row unless another unit of work holds it (it will see the same timers)."""
    row = await conn.fetchrow(_TRY_LOCK_SITE, *site)
    if row is None:
        return False
    if row["engine_state"] is not None:
        work.floods[site] = decode_flood(row["engine_state"])
    return True


async def lock_points(conn: asyncpg.Connection, points: Iterable[PointId], work: Workset) -> None:
    """Load the points that exist (their sites locked by `lock_sites` or `try_lock_site` before);
    the engine creates the others when first known."""
    by_site: dict[SiteKey, dict[str, PointId]] = {}
    for point in points:
        by_site.setdefault((point.tenant, point.site), {})[point.alarm_id] = point
    for (tenant, site), wanted in sorted(by_site.items()):
        for row in await conn.fetch(_LOAD_POINTS, tenant, site, list(wanted)):
            if row["engine_state"] is None:
                continue
            record = decode_record(row["engine_state"])
            # Keyed by the instance asked for (the engine's own, see Engine._point_id).
            point = wanted.get(row["alarm_id"], record.state.id)
            work.points[point] = record
            work.loaded[point] = Loaded(
                record, row["condition"], row["priority"], row["alarm_class"], row["latched"]
            )


async def due_sites(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[SiteKey]:
    """Sites with a point or a flood whose timer fell due by `now`."""
    return [(row["tenant"], row["site"]) for row in await conn.fetch(_DUE_SITES, now, limit)]


async def due_points(conn: asyncpg.Connection, site: SiteKey, now: datetime, engine: Engine) -> set[PointId]:
    """The points of `site` due by `now`, with the points a change of theirs may re-vote."""
    tenant, name = site
    points: set[PointId] = set()
    for row in await conn.fetch(_DUE_POINTS, tenant, name, now):
        device, _, rule = row["alarm_id"].rpartition("--")
        point = PointId(tenant, name, device, rule)
        points.add(point)
        if rule != VOTE_RULE:
            points.update(engine.group_keys(tenant, name, device))
    return points


async def write(conn: asyncpg.Connection, engine: Engine, work: Workset) -> list[Emitted]:
    """Write the changed points, floods and new transitions; return the transitions not written
    before (a redelivered batch recomputes the same ids, which the table keeps once)."""
    await _write_points(conn, engine, work)
    await _write_sites(conn, work)
    if work.flood_rows:
        rows = list(work.flood_rows.values())
        await conn.execute(
            _WRITE_FLOODS,
            [r.tenant for r in rows],
            [r.site for r in rows],
            [r.began_at for r in rows],
            [r.ended_at for r in rows],
            [r.activations for r in rows],
        )
    return await _write_transitions(conn, work.emitted)


async def _write_points(conn: asyncpg.Connection, engine: Engine, work: Workset) -> None:
    columns: list[list[object]] = [[] for _ in range(17)]
    quiet: list[list[object]] = [[] for _ in range(5)]
    for point in sorted(work.to_write(), key=lambda p: (p.tenant, p.site, p.alarm_id)):
        record = work.points[point]
        loaded = work.loaded.get(point)
        if loaded is not None and loaded.record is record:
            continue  # changed and changed back, or put again as it was: nothing to write
        handling = engine.handling(point)
        if handling is None:
            # Its rule was removed by a reload: the row keeps what it last showed, and no timer.
            await conn.execute(_WRITE_ORPHAN, point.tenant, point.site, point.alarm_id, record.due,
                               encode_record(record))  # fmt: skip
            continue
        if loaded is not None and loaded.shows_as(record, handling):
            engine_state: Sequence[object] = (
                point.tenant, point.site, point.alarm_id, record.due, encode_record(record),
            )  # fmt: skip
            for column, value in zip(quiet, engine_state, strict=True):
                column.append(value)
            continue
        state = record.state
        flags = sorted(record.flags | ({CONFIRMED} if point.rule == VOTE_RULE else set()))
        values: Sequence[object] = (
            point.tenant, point.site, point.alarm_id, point.device, point.rule,
            handling.condition.value, handling.priority.value, handling.alarm_class.value,
            state.state.value, state.active, is_latched(state, handling), state.shelved_until,
            _SEP.join(flags), state.changed_at, record.due, encode_record(record), state.snapshot,
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    if columns[0]:
        await conn.execute(_WRITE_POINTS, *columns, _SEP)
    if quiet[0]:
        await conn.execute(_WRITE_ENGINE_STATES, *quiet)


async def _write_sites(conn: asyncpg.Connection, work: Workset) -> None:
    keys = sorted(work.floods_changed)
    if not keys:
        return
    floods = [work.floods[k] for k in keys]
    await conn.execute(
        _WRITE_SITES,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [encode_flood(f) for f in floods],
        [next_flood_due(f) for f in floods],
    )


async def _write_transitions(conn: asyncpg.Connection, emitted: Sequence[Emitted]) -> list[Emitted]:
    if not emitted:
        return []
    ids = [transition_id(e.transition) for e in emitted]
    columns: list[list[object]] = [[] for _ in range(22)]
    for id_, item in zip(ids, emitted, strict=True):
        t, f, alarm = item.transition, item.facts, item.alarm
        action = t.action
        latency = None if f.ack_latency is None else round(f.ack_latency.total_seconds() * 1000)
        values: Sequence[object] = (
            id_, t.point.tenant, t.point.site, t.point.alarm_id, t.point.rule, alarm.priority.value,
            alarm.alarm_class.value, t.at, t.old.value, t.new.value, t.active, _SEP.join(t.observation_ids),
            t.timer, action.person if action else None, action.action if action else None,
            action.reason if action else "", _SEP.join(sorted(t.flags)), f.activation, f.reannunciation,
            f.returned, latency, f.entered_overlay.value if f.entered_overlay else None,
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    written = {row["id"] for row in await conn.fetch(_WRITE_TRANSITIONS, *columns, _SEP)}
    return [item for id_, item in zip(ids, emitted, strict=True) if id_ in written]
