"""Shared wire contracts: message ids, CloudEvents headers on NATS, and problem+json error bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from services.common.contracts.cloudevents import ce_attributes, ce_headers
from services.common.contracts.ids import derived_id, new_id, ulid_text
from services.common.http.problem import Problem

# ---------------------------------------------------------------- ids

T_MS = int(datetime(2026, 11, 22, 0, 15, tzinfo=UTC).timestamp() * 1000)


def test_new_ids_are_distinct_ulids() -> None:
    ids = {new_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(len(i) == 26 and str(ULID.from_str(i)) == i for i in ids)


def test_a_derived_id_depends_only_on_time_and_identity() -> None:
    assert derived_id(T_MS, "ulsan-refining", "gd-cdu1-101", "4.5") == derived_id(
        T_MS, "ulsan-refining", "gd-cdu1-101", "4.5"
    )
    assert derived_id(T_MS, "ulsan-refining", "gd-cdu1-101", "4.5") != derived_id(
        T_MS, "ulsan-refining", "gd-cdu1-101", "4.6"
    )
    assert derived_id(T_MS, "a") != derived_id(T_MS + 1, "a")


def test_a_derived_id_carries_its_time_and_sorts_by_it() -> None:
    early, late = derived_id(T_MS, "zzz"), derived_id(T_MS + 1, "aaa")

    assert ULID.from_str(early).datetime == datetime(2026, 11, 22, 0, 15, tzinfo=UTC)
    assert early < late


def test_a_time_outside_the_ulid_range_still_gives_a_valid_id() -> None:
    for time_ms in (-1, 1 << 50):
        value = derived_id(time_ms, "x")
        assert str(ULID.from_str(value)) == value


@given(st.binary(min_size=16, max_size=16))
def test_a_ulid_is_written_as_python_ulid_writes_it(value: bytes) -> None:
    assert ulid_text(value) == str(ULID.from_bytes(value))


def test_the_extreme_ulids_are_written_as_python_ulid_writes_them() -> None:
    for value in (bytes(16), b"\xff" * 16, bytes(15) + b"\x01", b"\x80" + bytes(15), b"\x03" + b"\xff" * 15):
        assert ulid_text(value) == str(ULID.from_bytes(value))


# ---------------------------------------------------------------- CloudEvents


def headers(source: str = "/ingest/keys/k1") -> dict[str, str]:
    return ce_headers(
        id="01JD0000000000000000000000",
        type="org.safetyhub.observation.v1",
        source=source,
        time="2026-11-22T00:15:00Z",
    )


def test_ce_headers_carry_the_required_attributes_and_the_dedup_id() -> None:
    assert headers() == {
        "Nats-Msg-Id": "01JD0000000000000000000000",
        "ce-specversion": "1.0",
        "ce-id": "01JD0000000000000000000000",
        "ce-type": "org.safetyhub.observation.v1",
        "ce-source": "/ingest/keys/k1",
        "ce-time": "2026-11-22T00:15:00Z",
    }


def test_ce_attributes_reads_back_what_ce_headers_wrote() -> None:
    assert ce_attributes(headers()) == {
        "specversion": "1.0",
        "id": "01JD0000000000000000000000",
        "type": "org.safetyhub.observation.v1",
        "source": "/ingest/keys/k1",
        "time": "2026-11-22T00:15:00Z",
    }


def test_ce_attributes_ignores_other_headers_and_accepts_none() -> None:
    assert ce_attributes({"Nats-Msg-Id": "x", "Nats-Expected-Stream": "OBS", "ce-id": "x"}) == {"id": "x"}
    assert ce_attributes(None) == {}
    assert ce_attributes({}) == {}


def test_a_non_ascii_source_is_percent_encoded_as_utf_8() -> None:
    value = headers("/gateways/울산-1")["ce-source"]

    assert value == "/gateways/%EC%9A%B8%EC%82%B0-1"


@pytest.mark.parametrize(
    "source",
    [
        "/gateways/울산-1",
        "/gateways/line 1",
        "/gateways/Ülsan\tline",
        "/gateways/50%25-line",  # a literal "%25" must survive, not turn into "%"
        "/gateways/100%",
        '/gateways/"north"',
    ],
)
def test_any_source_round_trips_through_the_headers(source: str) -> None:
    assert ce_attributes(headers(source))["source"] == source


@pytest.mark.parametrize(
    "source", ["/gateways/울산-1", "/gateways/line 1", "/gateways/Ülsan\tline", '/gateways/"north"']
)
def test_header_values_are_printable_ascii_without_space_or_double_quote(source: str) -> None:
    # CloudEvents HTTP binding 3.1.3.2: space, double-quote, percent and anything outside
    # U+0021..U+007E MUST be percent-encoded.
    value = headers(source)["ce-source"]

    assert all("!" <= ch <= "~" for ch in value), value
    assert '"' not in value, value


# ---------------------------------------------------------------- problem+json


def test_a_problem_body_has_the_rfc_9457_members_and_its_extensions() -> None:
    problem = Problem(
        422,
        "Invalid observations",
        "no item of the request is valid",
        slug="invalid-observations",
        errors=[{"index": 0, "field": "site", "detail": "unknown site 'x'"}],
    )

    assert problem.body("/v1/observations") == {
        "type": "https://safetyhub.dev/problems/invalid-observations",
        "title": "Invalid observations",
        "status": 422,
        "detail": "no item of the request is valid",
        "instance": "/v1/observations",
        "errors": [{"index": 0, "field": "site", "detail": "unknown site 'x'"}],
    }


def test_a_problem_type_defaults_to_its_title() -> None:
    body = Problem(413, "Payload too large", "at most 3 items", max_items=3).body("/v1/observations")

    assert body["type"] == "https://safetyhub.dev/problems/payload-too-large"
    assert body["max_items"] == 3
    assert body["status"] == 413


def test_a_problem_is_an_exception_whose_message_is_the_detail() -> None:
    with pytest.raises(Problem, match="the event bus is unreachable"):
        raise Problem(503, "Service unavailable", "the event bus is unreachable")
