"""Prometheus metrics of the incidents service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHANGES = Counter("safetyhub_incidents_changes", "Incident changes committed, by change", ["change"])
# Read from the table (the same figure in every worker, hence "max").
OPEN = Gauge(
    "safetyhub_incidents_open",
    "Incidents open, acknowledged or dispatched, by CAP severity",
    ["severity"],
    multiprocess_mode="max",
)
SIGNALS = Counter("safetyhub_incidents_alarm_signals", "Alarm activations and returns fused")
BATCH_SECONDS = Histogram(
    "safetyhub_incidents_batch_seconds",
    "Time to fuse and commit one unit of work",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
