"""Prometheus metrics of the store."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STORED = Counter("safetyhub_store_stored", "Observations written to PostgreSQL (new rows)")
DUPLICATES = Counter("safetyhub_store_duplicates", "Observations received again and not stored twice")
BATCH_SECONDS = Histogram(
    "safetyhub_store_batch_seconds",
    "Time to write one batch (COPY + move + commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Histogram(
    "safetyhub_store_batch_size",
    "Observations per written batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
