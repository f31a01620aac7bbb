"""A refused publish says which refusal it was: the acknowledgements nats-server sends, parsed.

The bodies are verbatim what nats-server 2.10 answered (see tests/integration/test_bus_failures.py
for the same refusals produced live).
"""

from __future__ import annotations

import pytest

from services.common.bus.publisher import PublishRejected, Refusal, refusal_of


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"},'
            b'"stream":"OBSERVATIONS","seq":0}',
            Refusal(503, 10077, "maximum messages per subject exceeded", "OBSERVATIONS"),
        ),
        (
            b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},'
            b'"stream":"PROBE2","seq":0}',
            Refusal(503, 10077, "maximum messages exceeded", "PROBE2"),
        ),
        (
            b'{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},'
            b'"stream":"OBSERVATIONS","seq":0}',
            Refusal(400, 10060, "expected stream does not match", "OBSERVATIONS"),
        ),
    ],
)
def test_a_puback_error_gives_its_codes_description_and_stream(body: bytes, expected: Refusal) -> None:
    assert refusal_of(body, None) == expected


def test_no_stream_for_the_subject_is_a_503_without_a_stream() -> None:
    # nats-server's status reply when nothing subscribes to the subject: no body, a Status header.
    refusal = refusal_of(b"", {"Status": "503", "Nats-Subject": "nowhere.x"})
    assert (refusal.code, refusal.err_code, refusal.stream) == (503, None, None)
    assert "no stream takes the subject" in refusal.description


def test_a_reply_that_is_not_a_puback_is_kept_as_its_text() -> None:
    assert refusal_of(b"-ERR 'bad'", None) == Refusal(None, None, "-ERR 'bad'", None)
    assert refusal_of(b'{"error":"odd"}', None).description == '{"error":"odd"}'


def test_the_error_carries_the_fields_like_a_database_error_carries_its_sqlstate() -> None:
    refusal = Refusal(503, 10077, "maximum messages per subject exceeded", "OBSERVATIONS")
    err = PublishRejected(refusal, subject="obs.acme.refinery.gd-101", refused=2, total=40)

    assert (err.code, err.err_code, err.stream, err.description) == (
        503,
        10077,
        "OBSERVATIONS",
        "maximum messages per subject exceeded",
    )
    assert str(err) == (
        "2 of 40 refused: obs.acme.refinery.gd-101: stream OBSERVATIONS: maximum messages per subject"
        " exceeded (code 503, err_code 10077)"
    )
