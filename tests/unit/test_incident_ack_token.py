"""The acknowledgement link's token: it verifies with the hub's key and its own audience only,
not past its expiry, not tampered with; a person's token is no ack token and the reverse."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from services.common.auth.hub_key import HUB_AUDIENCE, HUB_ISSUER, HubKey, issue_token
from services.common.auth.tokens import TokenRejected, TokenVerifier
from services.common.settings import JwtConfig
from services.common.sites.registry import SiteRegistry
from services.incidents.ack_token import (
    ACK_AUDIENCE,
    AckClaims,
    AckTokenInvalid,
    read_ack,
    sign_ack,
    token_kid,
)
from tests.conftest import REPO

REGISTRY = SiteRegistry.load([REPO / "sites" / "ulsan-demo.yaml"])
KEY = HubKey("safetyhub-0a1b2c3d", b"k" * 32)
OTHER = HubKey("safetyhub-99999999", b"o" * 32)
ISSUED = 1_780_000_000
CLAIMS = AckClaims(
    tenant="ulsan-refining",
    site="ulsan-refinery",
    incident_id="01JD0000000000000000000001",
    endpoint_id="01JD00000000000000000000EP",
    jti="msg_01JD0000000000000000000002",
    name="Control room",
    issued_at=ISSUED,
    expires_at=ISSUED + 24 * 3600,
)


def test_a_signed_token_reads_back_its_claims_and_names_its_key() -> None:
    token = sign_ack(KEY, CLAIMS)
    assert token_kid(token) == KEY.kid
    assert read_ack(token, KEY.secret, now=ISSUED + 60) == CLAIMS
    assert CLAIMS.actor == "link:Control room"
    nameless = AckClaims(**{**_fields(CLAIMS), "name": ""})
    assert read_ack(sign_ack(KEY, nameless), KEY.secret, now=ISSUED).actor == f"link:{CLAIMS.endpoint_id}"


def test_an_expired_token_is_refused() -> None:
    token = sign_ack(KEY, CLAIMS)
    assert read_ack(token, KEY.secret, now=CLAIMS.expires_at - 1).jti == CLAIMS.jti
    with pytest.raises(AckTokenInvalid, match="expired"):
        read_ack(token, KEY.secret, now=CLAIMS.expires_at)


def test_another_key_or_a_changed_claim_does_not_verify() -> None:
    token = sign_ack(KEY, CLAIMS)
    with pytest.raises(AckTokenInvalid, match="signature"):
        read_ack(token, OTHER.secret, now=ISSUED)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["inc"] = "01JD000000000000000000OTHER"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(AckTokenInvalid, match="signature"):
        read_ack(f"{header}.{forged}.{signature}", KEY.secret, now=ISSUED)
    # Unsigned ("alg": "none") is never accepted.
    unsigned = jwt.encode({**claims, "aud": ACK_AUDIENCE, "iss": HUB_ISSUER}, None, algorithm="none")
    with pytest.raises(AckTokenInvalid):
        read_ack(unsigned, KEY.secret, now=ISSUED)


async def test_the_hubs_token_verifier_refuses_an_ack_token_as_a_persons() -> None:
    now = int(time.time())
    live = AckClaims(**{**_fields(CLAIMS), "issued_at": now, "expires_at": now + 600})  # type: ignore[arg-type]
    tokens = TokenVerifier(JwtConfig(), sites=lambda: REGISTRY, hub_key=KEY)
    with pytest.raises(TokenRejected):
        await tokens.verify(sign_ack(KEY, live))
    # The same verifier takes a person's token signed with the same key.
    person = issue_token(KEY, subject="kim", tenant="ulsan-refining", roles=["admin"])
    assert (await tokens.verify(person)).tenant == "ulsan-refining"


def test_a_persons_token_is_no_ack_token_and_an_ack_token_is_no_persons() -> None:
    person = issue_token(KEY, subject="kim", tenant="ulsan-refining", roles=["admin"], now=ISSUED)
    with pytest.raises(AckTokenInvalid):
        read_ack(person, KEY.secret, now=ISSUED + 1)
    # Even with every claim of an ack token, the people's audience is refused.
    claims = jwt.decode(sign_ack(KEY, CLAIMS), options={"verify_signature": False})
    as_person = jwt.encode({**claims, "aud": HUB_AUDIENCE}, KEY.secret, algorithm="HS256")
    with pytest.raises(AckTokenInvalid, match="audience"):
        read_ack(as_person, KEY.secret, now=ISSUED + 1)
    ack = sign_ack(KEY, CLAIMS)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            ack,
            KEY.secret,
            algorithms=["HS256"],
            audience=HUB_AUDIENCE,
            issuer=HUB_ISSUER,
            options={"verify_exp": False},
        )


def test_a_token_missing_a_claim_or_not_a_jwt_is_refused() -> None:
    payload = {"iss": HUB_ISSUER, "aud": ACK_AUDIENCE, "iat": ISSUED, "exp": ISSUED + 60, "jti": "x"}
    partial = jwt.encode(payload, KEY.secret, algorithm="HS256", headers={"kid": KEY.kid})
    with pytest.raises(AckTokenInvalid):
        read_ack(partial, KEY.secret, now=ISSUED)
    for junk in ("", "abc", "a.b.c", "x" * 3000 + ".a.b"):
        with pytest.raises(AckTokenInvalid):
            token_kid(junk)
    kidless = jwt.encode(payload, KEY.secret, algorithm="HS256")
    with pytest.raises(AckTokenInvalid, match="kid"):
        token_kid(kidless)


def _fields(claims: AckClaims) -> dict[str, object]:
    return {name: getattr(claims, name) for name in AckClaims.__slots__}
