"""The pure parts of the outbox: what `emit` accepts, lock keys, back-off."""

from __future__ import annotations

import pytest

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts.cloudevents import MSG_ID, ce_headers
from services.common.outbox import OutboxError, UnitOfWork
from services.common.outbox.relay import backoff, lock_key
from services.common.outbox.unit_of_work import DEFAULT_MAX_PAYLOAD, notify_channel, wire_size


def message(n: int, payload: bytes = b"x") -> OutgoingMessage:
    headers = ce_headers(id=f"m-{n}", type="org.safetyhub.test.v1", source="/t", time="2026-12-01T00:00:00Z")
    return OutgoingMessage("alarms.acme.refinery", payload, headers)


def unit() -> UnitOfWork:
    return UnitOfWork(None, "alarms", DEFAULT_MAX_PAYLOAD)  # emit never touches the connection


def test_emitted_messages_keep_their_order() -> None:
    uow = unit()
    for n in range(5):
        uow.emit(message(n))
    assert [m.headers[MSG_ID] for m in uow.emitted] == [f"m-{n}" for n in range(5)]


def test_a_message_without_an_id_is_refused_at_emit() -> None:
    with pytest.raises(OutboxError, match="Nats-Msg-Id"):
        unit().emit(OutgoingMessage("alarms.acme.refinery", b"x", {"ce-type": "t"}))


def test_a_message_larger_than_nats_takes_is_refused_at_emit_not_by_the_relay() -> None:
    fits = DEFAULT_MAX_PAYLOAD - wire_size(message(0, b""))
    uow = unit()
    uow.emit(message(1, b"x" * fits))
    with pytest.raises(OutboxError, match="bytes"):
        uow.emit(message(2, b"x" * (fits + 1)))
    assert len(uow.emitted) == 1


def test_each_service_has_its_own_lock_and_channel() -> None:
    services = ["alarms", "incidents", "escalation", "feed", "store"]
    keys = [lock_key(s) for s in services]
    assert len(set(keys)) == len(services)
    assert all(-(2**31) <= objid < 2**31 for _, objid in keys), "pg_try_advisory_lock(int, int)"
    assert lock_key("alarms") == lock_key("alarms"), "stable across processes"
    assert notify_channel("alarms") != notify_channel("incidents")


def test_backoff_grows_and_stays_short() -> None:
    delays = [backoff(n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == pytest.approx(0.1)
    assert max(delays) == 5.0
    assert backoff(10_000) == 5.0
