"""Fusion's unit of work against real PostgreSQL: what it stores, and in how many statements.

Each statement is a round trip on which the unit of work waits, holding its site's lock, for the
database and then for its turn on a busy event loop; so the number of statements a lone alarm
costs is part of the time from the alarm to its incident on the live stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.alarms.domain.model import AlarmClass, ConditionType, Priority
from services.incidents import repository
from services.incidents.domain.fusion import FloodSignal, Fusion
from services.incidents.domain.model import IncidentType, Signal, Text
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry

pytestmark = pytest.mark.integration

TENANT, SITE = "ulsan-refining", "ulsan-refinery"
T0 = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)
FCC2 = (35.4721, 129.3601)
TANK = (35.4690, 129.3650)


def gas(device: str, at_s: float, zone: str, position: tuple[float, float]) -> Signal:
    return Signal(
        id=f"tr-{device}-{at_s}",
        tenant=TENANT,
        site=SITE,
        alarm_id=f"{device}--hh",
        device=device,
        rule="hh",
        kind="gas.h2s",
        zone=zone,
        position=position,
        alarm_class=AlarmClass.SAFETY,
        priority=Priority.HIGH,
        condition=ConditionType.HIGH,
        active=True,
        at=T0 + timedelta(seconds=at_s),
        action=Text(ko="조치", en=f"act on {device}"),
    )


@pytest.fixture
async def conn(migrated_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with migrated_pool.acquire() as connection:
        yield connection


async def fuse(conn: asyncpg.Connection, inputs: Sequence[Signal | FloodSignal]) -> list[str]:
    """One unit of work as the service runs it; returns the statements it sent."""
    sent: list[str] = []
    with conn.query_logger(lambda logged: sent.append(" ".join(logged.query.split()))):
        async with conn.transaction():
            [locked] = await repository.lock_sites(conn, [(TENANT, SITE)])
            changes = Fusion(DEFAULT_RULES).apply(locked.state, inputs)
            incidents = {i.id: i for i in locked.state.incidents}
            entries = [Entry.of_fusion(c, incidents[c.incident_id].status, TENANT) for c in changes]
            written = await repository.add_entries(conn, entries)
            for entry in entries:
                if entry.id in written:
                    incidents[entry.incident_id].version += 1
                    locked.touched.add(entry.incident_id)
            await repository.save_site(conn, locked)
    return sent


def count(sent: list[str], start: str) -> int:
    return sum(1 for statement in sent if statement.startswith(start))


async def test_a_units_incidents_are_stored_and_an_unchanged_site_row_is_neither_created_again_nor_rewritten(
    conn: asyncpg.Connection,
) -> None:
    # Two gas releases 500 m apart, in one unit of work: two incidents.
    first = await fuse(conn, [gas("gd-fcc2-203", 0, "fcc-2", FCC2), gas("gd-tf-501", 1, "tank-farm", TANK)])
    rows = await conn.fetch("SELECT type, status, version FROM incidents WHERE tenant = $1", TENANT)
    assert sorted((r["type"], r["status"], r["version"]) for r in rows) == [
        (IncidentType.GAS_RELEASE, "open", 1),
        (IncidentType.GAS_RELEASE, "open", 1),
    ]
    assert count(first, "INSERT INTO incident_sites") == 1  # the site's first unit of work
    assert count(first, "UPDATE incident_sites") == 0  # no flood, nothing pending: nothing to write

    # A second detector joins the FCC-2 release: the site row is there and stays as it was.
    second = await fuse(conn, [gas("gd-fcc2-204", 30, "fcc-2", FCC2)])
    versions = await conn.fetch("SELECT version FROM incidents WHERE tenant = $1 ORDER BY version", TENANT)
    assert [r["version"] for r in versions] == [1, 2]
    assert count(second, "INSERT INTO incident_sites") == 0
    assert count(second, "UPDATE incident_sites") == 0
    # Begin, lock the site, read its live incidents, add the entry, save the incident, commit.
    assert len(second) == 6, second


async def test_a_changed_site_row_is_written_back_and_read_by_the_next_unit_of_work(
    conn: asyncpg.Connection,
) -> None:
    await fuse(conn, [gas("gd-fcc2-203", 0, "fcc-2", FCC2)])
    began = FloodSignal(
        id="flood-1", tenant=TENANT, site=SITE, began=True, at=T0 + timedelta(seconds=5), since=T0
    )
    sent = await fuse(conn, [began])
    assert count(sent, "UPDATE incident_sites") == 1
    row = await conn.fetchrow(
        "SELECT flood_id, flood_since, flood_until FROM incident_sites WHERE tenant = $1 AND site = $2",
        TENANT,
        SITE,
    )
    assert row["flood_id"] is not None
    assert row["flood_since"] == T0
    assert row["flood_until"] is None

    [locked] = await repository.lock_sites(conn, [(TENANT, SITE)])
    assert locked.state.flood_id == row["flood_id"]
    assert any(i.id == row["flood_id"] and i.type is IncidentType.ALARM_FLOOD for i in locked.state.incidents)
