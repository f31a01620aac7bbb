#!/usr/bin/env python3
"""What the feed spends on one change of a flood incident: the INCIDENTS message decoded, read as
facts, projected under a policy and encoded as its CloudEvents FEED event, in this process (no
servers), per level and flood size. CPU time per change (process time, so a busy machine's other
work counts less than in wall-clock rates) and changes/s. Prints the figures, then one JSON line.
Not a test.
Usage: scripts/bench_feed_flood.py [--members 500] [--changes 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.common.contracts import AlarmClass, AlarmPriority, IncidentChange, IncidentType
from services.feed.adapters.events import feed_event
from services.feed.adapters.read import incident_facts
from services.feed.domain.facts import Position, SitePlaces
from services.feed.domain.policy import Kind, SharingPolicy
from services.feed.domain.projection import project_incident

PLACES = SitePlaces(Position(35.4768, 129.3529), {"fcc-2": Position(35.4782, 129.35491)})


def flood(members: int) -> bytes:
    """One change of a flood incident of `members` alarms, as it is on INCIDENTS."""
    change = IncidentChange()
    change.incident_id = "01KAMR2R1FQ4T5D3Y6Z8W9X0AB"
    change.envelope.id = change.entry.id = "01KAMR8P0BNV6ZG3S3M2Q4C8TB"
    change.envelope.tenant, change.envelope.site = "ulsan-refining", "ulsan-refinery"
    change.entry.change = "updated"
    change.entry.time.seconds = change.incident.opened_at.seconds = int(datetime.now(UTC).timestamp())
    change.incident.type = IncidentType.Value("INCIDENT_TYPE_ALARM_FLOOD")
    change.incident.zones.append("fcc-2")
    for n in range(members):
        m = change.incident.members.add()
        m.alarm_id, m.device, m.rule = f"pt-{n:04d}--hi", f"pt-{n:04d}", "hi"
        m.kind, m.zone, m.active = "pressure", "fcc-2", True
        m.alarm_class = AlarmClass.Value("ALARM_CLASS_PROCESS")
        m.priority = AlarmPriority.Value("ALARM_PRIORITY_LOW")
        m.joined_at.seconds = change.incident.opened_at.seconds + n
    change.incident.counts.update({"total": members})
    return change.SerializeToString()


def cost(payload: bytes, policy: SharingPolicy, changes: int) -> tuple[float, float]:
    """(CPU ms per change, changes/s of wall clock) for decode + facts + projection + event."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(changes):
        facts = incident_facts(IncidentChange.FromString(payload))
        shared = project_incident(facts, policy, PLACES)
        if shared is not None:
            feed_event(Kind.INCIDENT, shared, tenant=facts.tenant, site=facts.site,
                       source_id=facts.event_id, at=facts.at, policy_version=1)  # fmt: skip
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / changes * 1000, changes / wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=500, help="alarms in the flood incident")
    parser.add_argument("--changes", type=int, default=2000, help="changes per level and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, levels alternating; the best kept")
    args = parser.parse_args()
    payload = flood(args.members)
    levels = ("redacted", "full")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for level in levels:
            policy = msgspec.convert({"level": level}, SharingPolicy)
            ms, per_s = cost(payload, policy, args.changes)
            if level not in best or ms < best[level][0]:
                best[level] = (ms, per_s)
    figures: dict[str, float] = {"members": args.members, "changes": args.changes}
    for level, (ms, per_s) in best.items():
        print(f"{level}: {ms:.3f} ms CPU per change of a {args.members}-member flood, {per_s:,.0f} changes/s")
        figures[f"{level}_cpu_ms_per_change"] = round(ms, 4)
        figures[f"{level}_changes_per_s"] = round(per_s, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
