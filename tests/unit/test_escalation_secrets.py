"""Standard Webhooks secrets and signatures: the specification's test vector, verification by
the `standardwebhooks` library, and both signatures during a rotation's overlap."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.escalation.adapters.deliveries_db import Claimed
from services.escalation.adapters.secrets import new_secret, secret_problem, signature
from services.escalation.adapters.sender import webhook_headers

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_specification_s_test_vector() -> None:
    at = datetime.fromtimestamp(1614265330, UTC)
    signed = signature([VECTOR_SECRET], "msg_p5jXN8AQM9LWM0D4loKWxJek", at, b'{"test": 2432232314}')
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_whsec_base64_of_enough_random_bytes_and_differ() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and secret_problem(a) is None
    assert a.startswith("whsec_") and len(base64.b64decode(a[6:])) == 32


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes"),
    ],
)
def test_a_secret_not_in_whsec_form_is_refused(secret: str, why: str) -> None:
    problem = secret_problem(secret)
    assert problem is not None and why in problem


def claimed(secret: str, previous: str | None, previous_until: datetime | None) -> Claimed:
    return Claimed(
        id="msg_01JD0000000000000000000000",
        tenant="ulsan-refining",
        endpoint_id="01JD0000000000000000000001",
        incident_id="01JD0000000000000000000002",
        site="ulsan-refinery",
        change="opened",
        body=b'{"specversion":"1.0"}',
        content_type="application/cloudevents+json",
        attempts=0,
        created_at=datetime.now(UTC),
        url="http://127.0.0.1:1/",
        headers={"X-Receiver-Key": "abc"},
        secret=secret,
        previous_secret=previous,
        previous_until=previous_until,
    )


def test_during_the_overlap_both_secrets_sign_and_after_it_only_the_new() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    delivery = claimed(new, old, now + timedelta(hours=1))
    headers = webhook_headers(delivery, now)
    assert headers["webhook-id"] == delivery.id and headers["X-Receiver-Key"] == "abc"
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still holding the old secret verifies, as does one holding the new.
    for secret in (old, new):
        assert Webhook(secret).verify(delivery.body, headers) == {"specversion": "1.0"}

    # Once the overlap is over, only the new one.
    delivery = claimed(new, old, now - timedelta(seconds=1))
    headers = webhook_headers(delivery, now)
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new).verify(delivery.body, headers) == {"specversion": "1.0"}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(old).verify(delivery.body, headers)


def test_signatures_are_the_library_s_for_any_secret_and_body() -> None:
    at = datetime.now(UTC)
    body = '{"title": "황화수소 누출", "n": 1}'.encode()
    for secret in [new_secret() for _ in range(5)] + [VECTOR_SECRET, VECTOR_SECRET.rstrip("=")]:
        assert signature([secret], "msg_2", at, body) == Webhook(secret).sign("msg_2", at, body.decode())
    old, new = new_secret(), new_secret()
    both = signature([new, old], "msg_3", at, body)
    assert both == " ".join(Webhook(s).sign("msg_3", at, body.decode()) for s in (new, old))
