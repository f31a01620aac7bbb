"""People's bearer tokens (JWT), verified beside the API keys of machines.

A token is checked against the key it names: the hub's own (`kid` of `safetyhub tokens issue`) or
the organisation's identity provider (an HS256 secret, an RS256/ES256 public key, or a JWKS URL).
Each key accepts only its own algorithm, given explicitly: `none`, and HS256 signed with a public
key (the algorithm-confusion attack), never verify. `exp` is required; `nbf`, and `iss`/`aud` when
configured, are checked with `leeway_s` of clock skew. The claims (sub, name, tenant, roles,
sites) become a `Principal`; a tenant or site the site files do not declare for that tenant
refuses the token. Every refusal is a `TokenRejected` naming what was wrong (never a secret): the
middleware answers 401. A JWKS that cannot be fetched is `UnavailableError` (503, retry).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from prometheus_client import Counter

from services.common.auth.hub_key import HUB_ALGORITHM, HUB_AUDIENCE, HUB_ISSUER, HubKey
from services.common.auth.principal import PERSON_ROLES, Principal, most_capable
from services.common.errors import ConfigError, SafetyhubError, UnavailableError
from services.common.logging import get_logger
from services.common.settings import JwtConfig
from services.common.sites.registry import SiteRegistry

log = get_logger(__name__)

TOKEN_CHECKS = Counter(
    "safetyhub_auth_token_checks",
    "People's tokens presented, by result: accepted, or the reason they were refused",
    ["result"],
)
# An unknown kid, or a failed fetch, fetches the key set again at most this often.
_REFETCH_S = 10.0
# A token larger than this is not read: real ones are well under 2 KiB.
MAX_TOKEN_BYTES = 8192


class TokenRejected(SafetyhubError):
    """A token that does not verify; `reason` is a short slug for metrics, the message says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # bytes (HS256) or a public key object
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: a JWT (compact JWS) rather than an API key."""
    return token.count(".") == 2


class TokenVerifier:
    """Verifies people's tokens; one per process. `sites` is called per token (reloads swap it)."""

    def __init__(
        self,
        config: JwtConfig,
        *,
        sites: Callable[[], SiteRegistry],
        hub_key: HubKey | None = None,
        base: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sites = sites
        self._clock = clock
        self._hub = _Key(hub_key.secret, (HUB_ALGORITHM,), HUB_ISSUER, HUB_AUDIENCE) if hub_key else None
        self._hub_kid = hub_key.kid if hub_key else None
        self._provider = _provider_key(config, base or Path.cwd())
        self._jwks: jwt.PyJWKClient | None = None
        if config.jwks_url:
            # Its own caches off: the set is cached here, fetched in a thread (it blocks) and bounded.
            self._jwks = jwt.PyJWKClient(
                config.jwks_url,
                cache_jwk_set=False,
                cache_keys=False,
                timeout=int(max(1, config.jwks_timeout_s)),
            )
        self._jwk_keys: dict[str, _Key] = {}
        self._jwks_fetched: float | None = None
        self._jwks_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        """Whether any token can verify (the hub's key or an identity provider)."""
        return self._hub is not None or self._provider is not None or self._jwks is not None

    async def verify(self, token: str) -> Principal:
        try:
            principal = await self._verify(token)
        except TokenRejected as err:
            TOKEN_CHECKS.labels(err.reason).inc()
            raise
        TOKEN_CHECKS.labels("accepted").inc()
        return principal

    async def _verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("malformed", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected("malformed", "the token is not a well-formed JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed", "the token's kid is not a string")
        key = await self._key_for(kid)
        claims = self._decode(token, key)
        return self._principal(claims)

    async def _key_for(self, kid: str | None) -> _Key:
        if self._hub is not None and kid == self._hub_kid:
            return self._hub
        if self._provider is not None:
            return self._provider
        if self._jwks is not None:
            return await self._jwk(kid)
        raise TokenRejected("unknown_key", "the token is not signed by a key this hub trusts")

    async def _jwk(self, kid: str | None) -> _Key:
        key = self._jwk_keys.get(kid or "")
        if key is not None and not self._stale():
            return key
        async with self._jwks_lock:
            # An unknown kid fetches the set again, but at most every few seconds: random kids
            # must not turn the hub into a load generator against the identity provider.
            recent = self._jwks_fetched is not None and self._clock() - self._jwks_fetched < _REFETCH_S
            if self._stale() or (kid not in self._jwk_keys and not recent):
                await self._fetch_jwks()
        key = self._jwk_keys.get(kid or "")
        if key is None:
            if kid is None and len(self._jwk_keys) == 1:
                return next(iter(self._jwk_keys.values()))
            raise TokenRejected("unknown_key", "the token's kid is not in the identity provider's key set")
        return key

    def _stale(self) -> bool:
        fetched = self._jwks_fetched
        return fetched is None or self._clock() - fetched >= self._config.jwks_refresh_s

    async def _fetch_jwks(self) -> None:
        assert self._jwks is not None
        timeout = self._config.jwks_timeout_s
        try:
            async with asyncio.timeout(timeout + 1):
                jwk_set = await asyncio.to_thread(self._jwks.get_jwk_set, True)
        except (TimeoutError, jwt.PyJWKClientError, jwt.PyJWKSetError) as err:
            log.warning("jwks_unavailable", url=self._config.jwks_url, error=str(err)[:200])
            if self._jwk_keys:
                # Keep the last good set and try again in _REFETCH_S, not a whole refresh later.
                self._jwks_fetched = self._clock() - self._config.jwks_refresh_s + _REFETCH_S
                return
            raise UnavailableError("cannot fetch the identity provider's keys (JWKS)") from err
        keys: dict[str, _Key] = {}
        for jwk in jwk_set.keys:
            algorithms = _algorithms_of(jwk.key)
            if algorithms and jwk.key_id:
                keys[jwk.key_id] = _Key(jwk.key, algorithms, self._config.issuer, self._config.audience)
            elif algorithms and len(jwk_set.keys) == 1:
                keys[""] = _Key(jwk.key, algorithms, self._config.issuer, self._config.audience)
        self._jwk_keys = keys
        self._jwks_fetched = self._clock()

    def _decode(self, token: str, key: _Key) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                issuer=key.issuer,
                audience=key.audience,
                leeway=self._config.leeway_s,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected(
                "not_yet_valid", "the token is not valid yet (nbf or iat in the future)"
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("audience", "the token is not for this audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("issuer", "the token's issuer (iss) is not trusted") from None
        except jwt.MissingRequiredClaimError as err:
            raise TokenRejected("claims", f"the token has no '{err.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRejected(
                "algorithm", f"the token's algorithm is not accepted; expected {key.algorithms[0]}"
            ) from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("signature", "the token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected("malformed", "the token is not a well-formed JWT") from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        tenant = claims.get("tenant")
        name = claims.get("name")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("claims", "the token's 'sub' claim is not a user name")
        if not isinstance(tenant, str) or not tenant:
            raise TokenRejected("claims", "the token has no 'tenant' claim")
        if name is not None and not isinstance(name, str):
            raise TokenRejected("claims", "the token's 'name' claim is not a string")
        roles = _strings(claims.get("roles"), "roles")
        # Roles of other applications at the identity provider are not ours: ignored.
        granted = frozenset(r for r in roles or () if r in PERSON_ROLES)
        if not granted:
            raise TokenRejected("claims", f"the token grants none of the roles {', '.join(PERSON_ROLES)}")
        sites = _strings(claims.get("sites"), "sites")
        registry = self._sites()
        if tenant not in {t.id for t in registry.tenants}:
            raise TokenRejected("tenant", f"the token's tenant {tenant!r} is not known to this hub")
        for site in sites or ():
            if registry.tenant_of(site) != tenant:
                raise TokenRejected("sites", f"the token's site {site!r} is not a site of tenant {tenant!r}")
        if sites is not None and not sites:
            raise TokenRejected("sites", "the token's 'sites' claim is empty: it could reach no site")
        return Principal(
            key_id=f"person:{subject}",
            tenant=tenant,
            role=most_capable(granted),
            sites=frozenset(sites) if sites is not None else None,
            kind="person",
            roles=granted,
            subject=subject,
            name=name,
        )


def _strings(value: object, claim: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # some providers send a single role as a string
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise TokenRejected("claims", f"the token's '{claim}' claim is not a list of strings")


def _algorithms_of(key: object) -> tuple[str, ...]:
    """The one algorithm a public key verifies: RS256 for RSA, ES256 for P-256; none otherwise."""
    if isinstance(key, RSAPublicKey):
        return ("RS256",)
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return ("ES256",)
    return ()


def _provider_key(config: JwtConfig, base: Path) -> _Key | None:
    """The identity provider's secret or public key from the config; None for none or a JWKS URL."""
    chosen = [k for k in ("hs256_secret_file", "public_key_file", "jwks_url") if getattr(config, k)]
    if len(chosen) > 1:
        raise ConfigError("config", None, "auth.jwt", f"choose one of {', '.join(chosen)}")
    if config.hs256_secret_file:
        secret = _read(base, config.hs256_secret_file, "hs256_secret_file").strip()
        if len(secret) < 32:
            raise ConfigError(
                "config", None, "auth.jwt.hs256_secret_file", "the secret must be at least 32 bytes"
            )
        return _Key(secret, ("HS256",), config.issuer, config.audience)
    if config.public_key_file:
        pem = _read(base, config.public_key_file, "public_key_file")
        try:
            public = load_pem_public_key(pem)
        except ValueError as err:
            raise ConfigError(
                "config", None, "auth.jwt.public_key_file", f"not a PEM public key: {err}"
            ) from None
        algorithms = _algorithms_of(public)
        if not algorithms:
            raise ConfigError(
                "config", None, "auth.jwt.public_key_file", "an RSA or P-256 EC public key is needed"
            )
        return _Key(public, algorithms, config.issuer, config.audience)
    return None


def _read(base: Path, name: str, key: str) -> bytes:
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), None, f"auth.jwt.{key}", f"cannot read: {err.strerror}") from None
