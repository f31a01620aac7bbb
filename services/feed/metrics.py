"""Prometheus metrics of the feed service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXPORTS = Counter("safetyhub_feed_exports", "Events that left on FEED, by kind and level", ["kind", "level"])
WITHHELD = Counter(
    "safetyhub_feed_withheld",
    "Incident changes and alarm transitions the sharing policy kept in, by kind and level",
    ["kind", "level"],
)
DELAYED = Counter("safetyhub_feed_delayed", "Events held back by a policy's delay, by kind", ["kind"])
OUT_OF_ORDER = Counter(
    "safetyhub_feed_out_of_order_dropped",
    "Incident changes dropped because a newer version of the incident was already decided on",
)
BATCH_SECONDS = Histogram(
    "safetyhub_feed_batch_seconds",
    "Time to project and commit one unit of work",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
NGSI = Counter(
    "safetyhub_feed_ngsi_entities",
    "Alert entities sent to the NGSI-LD context broker, by outcome (upserted, refused, retried)",
    ["outcome"],
)
LEADER = Gauge(
    "safetyhub_feed_leader",
    "1 while this process runs the feed's consumers and timers (holds the lock), 0 while it stands by",
)
SNAPSHOTS = Counter(
    "safetyhub_feed_snapshots",
    "Blurred snapshot copies a shared event named: copied to FEED_SNAPSHOTS, already there, or missing"
    " (no blurred copy on SNAPSHOTS)",
    ["outcome"],
)
