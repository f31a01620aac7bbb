"""Metrics of the outbox relays, labelled by the service whose outbox it is."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHED = Counter("safetyhub_outbox_published", "Outbox messages JetStream acknowledged", ["service"])
# A standby relay reports 0, so under `up --workers N` the maximum is the leader's figure.
DEPTH = Gauge(
    "safetyhub_outbox_depth",
    "Committed messages waiting in the outbox",
    ["service"],
    multiprocess_mode="max",
)
LATENCY = Histogram(
    "safetyhub_outbox_publish_seconds",
    "From a message's commit to JetStream's acknowledgement of it",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
FAILURES = Counter(
    "safetyhub_outbox_relay_failures",
    "Relay attempts that failed and are retried (bus or database unavailable, message refused)",
    ["service", "reason"],
)
