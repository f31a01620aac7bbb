"""Prometheus metrics of the alarm engine."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVALUATED = Counter(
    "safetyhub_alarms_observations_evaluated", "Observations applied to at least one alarm rule"
)
UNWATCHED = Counter(
    "safetyhub_alarms_observations_unwatched", "Observations of a device or kind no alarm rule watches"
)
TRANSITIONS = Counter("safetyhub_alarms_transitions", "Alarm state transitions, by new state", ["state"])
# Read from the tables (the same figure in every worker, hence "max").
ACTIVE = Gauge(
    "safetyhub_alarms_active",
    "Alarms shown to operators (UNACK, ACKED, RTNUN), by priority",
    ["priority"],
    multiprocess_mode="max",
)
SITES_IN_FLOOD = Gauge(
    "safetyhub_alarms_sites_in_flood", "Sites in an alarm flood now", multiprocess_mode="max"
)
FLOODS = Counter("safetyhub_alarms_flood_edges", "Alarm floods begun or ended", ["edge"])
TIMERS_FIRED = Counter(
    "safetyhub_alarms_timers_fired", "Timers fired: on/off-delays, stale, detection windows, shelves, floods"
)
BATCH_SECONDS = Histogram(
    "safetyhub_alarms_batch_seconds",
    "Time to evaluate and commit one unit of work",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RULES_RELOADS = Counter("safetyhub_alarms_rules_reloads", "Alarm rule reloads, by result", ["result"])
