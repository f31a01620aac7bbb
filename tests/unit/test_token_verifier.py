"""People's tokens: which verify, and that every other one is refused with a reason, never a crash.

Keys are generated here; the JWKS case fetches from a real local HTTP server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.auth.hub_key import HubKey, issue_token
from services.common.auth.principal import Permission
from services.common.auth.tokens import TokenRejected, TokenVerifier, looks_like_jwt
from services.common.errors import ConfigError, UnavailableError
from services.common.settings import JwtConfig
from services.common.sites.registry import SiteRegistry
from tests.conftest import REPO

TENANT = "ulsan-refining"
HUB = HubKey("safetyhub-test", b"s" * 32)
ISSUER = "https://id.example.com/"
AUDIENCE = "safetyhub-api"

REGISTRY = SiteRegistry.load([REPO / "sites" / "ulsan-demo.yaml"])


def claims(**changes: Any) -> dict[str, Any]:
    """The claims of a valid token with `changes`; a callable change is given the time now (a time
    fixed when the tests are collected may have passed by the time the test runs)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "kim.minji",
        "name": "Kim Minji",
        "tenant": TENANT,
        "roles": ["operator"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update({k: v(now) if callable(v) else v for k, v in changes.items()})
    return {k: v for k, v in base.items() if v is not None}


def verifier(
    config: JwtConfig | None = None, *, hub: HubKey | None = HUB, base: Path | None = None
) -> TokenVerifier:
    return TokenVerifier(config or JwtConfig(), sites=lambda: REGISTRY, hub_key=hub, base=base)


async def rejected(v: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        await v.verify(token)
    return caught.value


@pytest.fixture(scope="module")
def es256(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("keys") / "idp-es256.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


@pytest.fixture(scope="module")
def rs256(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "idp-rs256.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


async def test_a_token_of_the_hub_gives_the_person_their_tenant_roles_and_sites() -> None:
    token = issue_token(
        HUB,
        subject="kim.minji",
        tenant=TENANT,
        roles=["viewer", "operator"],
        sites=["ulsan-refinery"],
        name="Kim",
    )

    person = await verifier().verify(token)

    assert (person.kind, person.subject, person.name, person.tenant) == ("person", "kim.minji", "Kim", TENANT)
    assert person.key_id == "person:kim.minji" and person.actor == "kim.minji"
    assert person.roles == {"viewer", "operator"} and person.role == "operator"
    assert person.sites == {"ulsan-refinery"}
    assert person.may(Permission("alarms.ack", frozenset({"operator", "admin"})))
    assert not person.may(Permission("observations.post", frozenset({"gateway", "admin"})))
    assert person.may_access_site("ulsan-refinery", TENANT)


async def test_an_es256_token_of_the_identity_provider_verifies_with_its_public_key(
    es256: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, pem = es256
    v = verifier(JwtConfig(public_key_file=str(pem), issuer=ISSUER, audience=AUDIENCE))

    person = await v.verify(jwt.encode(claims(), key, algorithm="ES256"))

    assert person.subject == "kim.minji" and person.sites is None
    # The hub's own tokens still verify beside the provider's.
    assert (await v.verify(issue_token(HUB, subject="lee", tenant=TENANT, roles=["admin"]))).role == "admin"


async def test_an_rs256_token_verifies_and_hs256_signed_with_the_public_key_is_refused(
    rs256: tuple[rsa.RSAPrivateKey, Path],
) -> None:
    key, pem = rs256
    v = verifier(JwtConfig(public_key_file=str(pem), issuer=ISSUER, audience=AUDIENCE))
    assert (await v.verify(jwt.encode(claims(), key, algorithm="RS256"))).subject == "kim.minji"

    # The classic confusion: the public key (known to all) used as an HMAC secret.
    forged = _sign_hs256(claims(roles=["admin"]), pem.read_bytes())
    error = await rejected(v, forged)
    assert error.reason == "algorithm"


async def test_an_hs256_secret_of_the_identity_provider(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x" * 40 + "\n")
    v = verifier(JwtConfig(hs256_secret_file="secret", audience=AUDIENCE), base=tmp_path)

    assert (await v.verify(jwt.encode(claims(iss=None), "x" * 40, algorithm="HS256"))).tenant == TENANT
    assert (
        await rejected(v, jwt.encode(claims(iss=None), "y" * 40, algorithm="HS256"))
    ).reason == "signature"


@pytest.mark.parametrize(
    ("changes", "reason", "says"),
    [
        ({"exp": lambda now: now - 120}, "expired", "expired"),
        ({"nbf": lambda now: now + 600}, "not_yet_valid", "not valid yet"),
        ({"aud": "another-app"}, "audience", "audience"),
        ({"iss": "https://evil.example.com/"}, "issuer", "issuer"),
        ({"exp": None}, "claims", "'exp'"),
        ({"sub": None}, "claims", "'sub'"),
        ({"tenant": None}, "claims", "'tenant'"),
        ({"tenant": "acme"}, "tenant", "'acme'"),
        ({"sites": ["mipo-aromatics"]}, "sites", "not a site of tenant"),
        ({"sites": []}, "sites", "empty"),
        ({"roles": ["offline_access"]}, "claims", "grants none"),
        ({"roles": ["gateway"]}, "claims", "grants none"),
        ({"roles": "operator", "sites": "ulsan-refinery", "name": 3}, "claims", "'name'"),
        ({"roles": [1]}, "claims", "'roles'"),
    ],
)
async def test_a_token_that_does_not_hold_is_refused_saying_why(
    es256: tuple[ec.EllipticCurvePrivateKey, Path], changes: dict[str, Any], reason: str, says: str
) -> None:
    key, pem = es256
    v = verifier(JwtConfig(public_key_file=str(pem), issuer=ISSUER, audience=AUDIENCE, leeway_s=30))

    error = await rejected(v, jwt.encode(claims(**changes), key, algorithm="ES256"))

    assert (error.reason, says in str(error)) == (reason, True), str(error)


async def test_a_bad_signature_none_and_another_key_are_refused(
    es256: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    _, pem = es256
    v = verifier(JwtConfig(public_key_file=str(pem), issuer=ISSUER, audience=AUDIENCE))
    other = ec.generate_private_key(ec.SECP256R1())

    assert (await rejected(v, jwt.encode(claims(), other, algorithm="ES256"))).reason == "signature"
    assert (await rejected(v, jwt.encode(claims(), None, algorithm="none"))).reason == "algorithm"
    # The hub's kid with a signature of another secret.
    forged = jwt.encode(
        claims(iss="safetyhub", aud="safetyhub"), b"t" * 32, algorithm="HS256", headers={"kid": HUB.kid}
    )
    assert (await rejected(v, forged)).reason == "signature"
    # A token of the hub once its key is not trusted (hub_tokens off, no provider).
    hub_token = issue_token(HUB, subject="lee", tenant=TENANT, roles=["admin"])
    assert (await rejected(verifier(hub=None), hub_token)).reason == "unknown_key"
    # Tampered claims under a valid signature.
    head, _, sig = hub_token.split(".")
    body = _b64(json.dumps(claims(tenant="mipo-petrochem", iss="safetyhub", aud="safetyhub")).encode())
    assert (await rejected(verifier(), f"{head}.{body}.{sig}")).reason == "signature"


async def test_a_token_from_a_jwks_url_verifies_by_its_kid_and_an_unknown_kid_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    fetches: list[int] = []

    async def jwks(_: web.Request) -> web.Response:
        fetches.append(1)
        return web.json_response({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]})

    async with _serve(jwks) as url:
        v = verifier(JwtConfig(jwks_url=url, issuer=ISSUER, audience=AUDIENCE))
        token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k1"})
        assert (await v.verify(token)).subject == "kim.minji"
        assert (await v.verify(token)).subject == "kim.minji"
        assert len(fetches) == 1  # the key set is cached

        unknown = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k2"})
        assert (await rejected(v, unknown)).reason == "unknown_key"
        assert (await rejected(v, unknown)).reason == "unknown_key"
        assert len(fetches) == 1  # fetched a moment ago: random kids do not refetch


async def test_an_unreachable_jwks_is_unavailable_not_a_refusal(unused_tcp_port: int) -> None:
    v = verifier(JwtConfig(jwks_url=f"http://127.0.0.1:{unused_tcp_port}/jwks", jwks_timeout_s=1.0))
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(UnavailableError):
        await v.verify(jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k1"}))


def test_a_config_naming_two_key_sources_or_a_short_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("short")
    with pytest.raises(ConfigError, match="choose one of"):
        verifier(JwtConfig(hs256_secret_file="short", jwks_url="http://x/"), base=tmp_path)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        verifier(JwtConfig(hs256_secret_file="short"), base=tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        verifier(JwtConfig(public_key_file="missing.pem"), base=tmp_path)


def test_keys_and_tokens_are_told_apart() -> None:
    assert looks_like_jwt(issue_token(HUB, subject="lee", tenant=TENANT, roles=["viewer"]))
    assert not looks_like_jwt("shk_0123456789ab_secret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_JUNK = st.one_of(
    st.text(max_size=300),
    st.lists(st.text(max_size=80), min_size=3, max_size=3).map(".".join),
    st.lists(st.binary(max_size=120).map(_b64), min_size=3, max_size=3).map(".".join),
    st.tuples(
        st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(), st.none()))
    ).map(lambda d: f"{_b64(json.dumps(d[0]).encode())}.{_b64(json.dumps(d[0]).encode())}.{_b64(b'x')}"),
)


_CLAIM_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.lists(st.one_of(st.text(max_size=12), st.integers()), max_size=3),
    st.sampled_from(["ulsan-refining", "acme", "operator", ["operator"], ["ulsan-refinery"]]),
    st.just(["mipo-aromatics"]),
)  # fmt: skip
_SIGNED_JUNK = st.tuples(
    st.dictionaries(
        st.sampled_from(["sub", "name", "tenant", "roles", "sites", "exp", "nbf", "iat", "iss", "aud", "x"]),
        _CLAIM_VALUES,
    ),
    st.dictionaries(st.sampled_from(["typ", "crit", "jku", "cty"]), _CLAIM_VALUES),
).map(
    # Correctly signed by the hub's key, so the claims themselves are what is checked.
    # By hand: PyJWT's encode refuses some of these claims, an attacker's tool would not.
    lambda ch: _sign_hs256(ch[0], HUB.secret, {**ch[1], "kid": HUB.kid})
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=_SIGNED_JUNK)
async def test_signed_tokens_with_junk_claims_are_refused_or_hold_every_check(token: str) -> None:
    try:
        person = await verifier().verify(token)
    except TokenRejected:
        return
    # Whatever verified met every rule.
    assert person.tenant in {t.id for t in REGISTRY.tenants} and person.subject
    assert person.roles and all(REGISTRY.tenant_of(s) == person.tenant for s in person.sites or ())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=_JUNK)
async def test_junk_is_refused_never_an_exception_of_another_kind(junk: str) -> None:
    try:
        await verifier().verify(junk)
    except TokenRejected:
        pass
    else:
        pytest.fail(f"{junk!r} verified")


def _sign_hs256(payload: dict[str, Any], secret: bytes, header: dict[str, Any] | None = None) -> str:
    # Built by hand: PyJWT itself refuses to sign HS256 with a PEM key, as an attacker's tool would not.
    head = _b64(json.dumps({"typ": "JWT", **(header or {}), "alg": "HS256"}).encode())
    body = _b64(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


class _serve:
    """A real HTTP server on a free local port answering GET /jwks with `handler`."""

    def __init__(self, handler: Any) -> None:
        self._app = web.Application()
        self._app.router.add_get("/jwks", handler)
        self._runner = web.AppRunner(self._app)

    async def __aenter__(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/jwks"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def test_a_key_rotated_at_the_identity_provider_is_fetched_when_a_token_names_it() -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    served = {"keys": [_jwk(old, "k1")]}
    now = [1_000.0]

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(served)

    async with _serve(jwks) as url:
        v = TokenVerifier(JwtConfig(jwks_url=url), sites=lambda: REGISTRY, clock=lambda: now[0])
        assert (await v.verify(jwt.encode(claims(iss=None, aud=None), old, "ES256", {"kid": "k1"}))).subject
        served["keys"] = [_jwk(old, "k1"), _jwk(new, "k2")]
        rotated = jwt.encode(claims(iss=None, aud=None), new, "ES256", {"kid": "k2"})
        now[0] += 5  # fetched a moment ago: not yet again
        assert (await rejected(v, rotated)).reason == "unknown_key"
        now[0] += 6
        assert (await v.verify(rotated)).subject == "kim.minji"


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "ES256"}
