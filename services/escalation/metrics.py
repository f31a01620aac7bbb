"""Prometheus metrics of the escalation service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter("safetyhub_escalation_attempts", "Delivery attempts, by outcome", ["outcome"])
DELIVERED = Counter("safetyhub_escalation_delivered", "Deliveries answered 2xx")
DEAD = Counter("safetyhub_escalation_dead", "Deliveries dead-lettered (exhausted or 410)")
QUEUED = Counter("safetyhub_escalation_queued", "Deliveries queued from incident changes")
PENDING = Gauge(
    "safetyhub_escalation_pending",
    "Deliveries pending or being sent",
    multiprocess_mode="max",
)
ATTEMPT_SECONDS = Histogram(
    "safetyhub_escalation_attempt_seconds",
    "Time of one attempt, request sent to answer read",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0),
)
