"""Prometheus metrics of ingest."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Histogram

from services.common.bus.publisher import OutgoingMessage, Published

RECEIVED = Counter("safetyhub_ingest_received", "Observations received in requests (valid or not)")
ACCEPTED = Counter("safetyhub_ingest_accepted", "Observations acknowledged by JetStream and answered 202")
# Accepted, yet not new: observations of a message the stream already had (a retried post) and
# ids repeated within one request. Accepted = stored + these + the store's duplicates + in flight.
DUPLICATES = Counter(
    "safetyhub_ingest_duplicates",
    "Accepted observations the stream already had, or repeated within one request",
)
REJECTED = Counter("safetyhub_ingest_rejected", "Observations refused, by reason", ["reason"])
REQUEST_SECONDS = Histogram(
    "safetyhub_ingest_request_seconds",
    "Time from request received to answer, accepted requests",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUT_OF_RANGE = Counter(
    "safetyhub_ingest_out_of_range",
    "Accepted readings outside their device's registered range (stored with quality bad), by kind",
    ["kind"],
)


def count_accepted(
    accepted: int,
    messages: Sequence[OutgoingMessage],
    published: Published,
    *,
    out_of_range: Iterable[str],
) -> None:
    """Count what JetStream acknowledged for one request.

    `accepted` observations; which of them are not new: those of messages the stream already had
    (a retried post) and ids repeated within the request, which travel once (`messages` carry the
    rest); and the kind of each one outside its registered range.
    """
    ACCEPTED.inc(accepted)
    DUPLICATES.inc(published.duplicate_items + accepted - sum(message.count for message in messages))
    # One labelled increment per kind, not per reading: labels() is the costly part.
    for kind, count in collections.Counter(out_of_range).items():
        OUT_OF_RANGE.labels(kind).inc(count)
