"""The JSON of the alarm read API: an alarm with its rule's rationale, a transition, the KPIs.

Flat objects as the rest of the HTTP API (openapi.yaml: Alarm, AlarmTransition, AlarmKpis); times
in RFC 3339, durations in seconds, texts in Korean and English.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.alarms.domain.kpis import Judged, Kpis, Rate, Target
from services.alarms.domain.model import Rationale, Text
from services.alarms.domain.rules import RuleSet


def rationale_of(rules: RuleSet, site: str, device: str, rule_id: str) -> Rationale | None:
    """The master-alarm-database entry of a point: its rule's, or for a voting group's alarm the
    group's; None when the rules in use no longer know it (a rule removed since)."""
    rule = rules.index.rule(rule_id)
    if rule is not None:
        return rule.rationale
    for group in rules.groups_of(site):
        if group.id == device:
            return group.rationale
    return None


def _text(text: Text) -> dict[str, str]:
    return {"ko": text.ko, "en": text.en}


def rationale_json(rationale: Rationale | None) -> dict[str, Any] | None:
    if rationale is None:
        return None
    return {
        "cause": _text(rationale.cause),
        "consequence": _text(rationale.consequence),
        "action": _text(rationale.action),
        "time_to_respond_s": rationale.time_to_respond.total_seconds(),
    }


def alarm_json(row: asyncpg.Record, rules: RuleSet) -> dict[str, Any]:
    shelved_until, changed_at = row["shelved_until"], row["changed_at"]
    return {
        "id": row["alarm_id"],
        "site": row["site"],
        "device": row["device"],
        "rule": row["rule_id"],
        "condition": row["condition"],
        "priority": row["priority"],
        "class": row["alarm_class"],
        "state": row["state"],
        "active": row["active"],
        "latched": row["latched"],
        "shelved_until": shelved_until.isoformat() if shelved_until is not None else None,
        "flags": sorted(row["flags"]),
        "changed_at": changed_at.isoformat() if changed_at is not None else None,
        # The picture of the detection that last raised it (the tenant's reference); null when none.
        "snapshot": row["snapshot"] or None,
        "rationale": rationale_json(rationale_of(rules, row["site"], row["device"], row["rule_id"])),
    }


def transition_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "old_state": row["old_state"],
        "new_state": row["new_state"],
        "active": row["active"],
        "activation": row["activation"],
        "observation_ids": list(row["observation_ids"]),
        "timer": row["timer"],
        "action": row["action"],
        "actor": row["actor"],
        "reason": row["reason"],
        "flags": sorted(row["flags"]),
    }


def _target(target: Target) -> dict[str, float]:
    return {"acceptable": target.acceptable, "maximum": target.maximum}


def _rate(rate: Rate) -> dict[str, Any]:
    body: dict[str, Any] = {
        "average": rate.average,
        "peak": rate.peak,
        "target": _target(rate.target),
        "status": rate.status.value,
    }
    if rate.peak_target is not None and rate.peak_status is not None:
        body["peak_target"] = _target(rate.peak_target)
        body["peak_status"] = rate.peak_status.value
    return body


def _judged(judged: Judged) -> dict[str, Any]:
    return {"value": judged.value, "target": _target(judged.target), "status": judged.status.value}


def kpis_json(site: str, timezone: str, kpis: Kpis) -> dict[str, Any]:
    return {
        "site": site,
        "from": kpis.start.isoformat(),
        "to": kpis.end.isoformat(),
        "timezone": timezone,
        "activations": kpis.activations,
        "per_day": _rate(kpis.per_day),
        "per_hour": _rate(kpis.per_hour),
        "per_10_minutes": _rate(kpis.per_10_minutes),
        "intervals_above_10_pct": _judged(kpis.intervals_above_10_pct),
        "flood_time_pct": _judged(kpis.flood_time_pct),
        "top10": [
            {"alarm_id": f.alarm_id, "activations": f.activations, "share_pct": f.share_pct}
            for f in kpis.top10
        ],
        "top10_share_pct": _judged(kpis.top10_share_pct),
        "chattering": _judged(kpis.chattering),
        "fleeting": _judged(kpis.fleeting),
        "stale": _judged(kpis.stale),
        "priorities": [
            {
                "priority": p.priority.value,
                "activations": p.activations,
                "share_pct": p.share_pct,
                "target_pct": p.target_pct,
            }
            for p in kpis.priorities
        ],
        "shelved": kpis.shelved,
        "suppressed": kpis.suppressed,
        "out_of_service": kpis.out_of_service,
    }
