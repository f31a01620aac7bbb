"""The signed one-time acknowledgement link's token: who may acknowledge which incident, until when.

Escalation signs one per notification with the hub's own key (services/common/auth/hub_key.py);
the incidents service verifies it at `/v1/ack/{token}`. Its audience is its own, so an ack token
never verifies as a person's token (audience `safetyhub`) and a person's token never acknowledges
through a link. The token is the only credential of the link: it names one tenant, site and
incident, the endpoint it was sent to, its id (`jti`, recorded when used: one use) and its expiry.

Pure: no clock (`now` is a parameter), no I/O (the caller finds the key by the token's `kid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from services.common.auth.hub_key import HUB_ALGORITHM, HUB_ISSUER, HubKey
from services.common.errors import SafetyhubError

ACK_AUDIENCE = "safetyhub-ack"
# A link is a path segment: a token longer than this was not made here.
MAX_TOKEN_CHARS = 2048
_REQUIRED = ("iss", "aud", "exp", "iat", "jti", "tenant", "site", "inc", "ep")


class AckTokenInvalid(SafetyhubError):
    """Not a token this hub made for an acknowledgement, or expired. The reason is for the log only:
    the link's answer says no more than "not valid", so a guess learns nothing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class AckClaims:
    """What an acknowledgement link lets its holder do: acknowledge one incident, once."""

    tenant: str
    site: str
    incident_id: str
    endpoint_id: str
    jti: str
    # Who the acknowledgement is recorded as: "link:<endpoint name or id>".
    name: str
    issued_at: int
    expires_at: int

    @property
    def actor(self) -> str:
        return f"link:{self.name or self.endpoint_id}"


def sign_ack(key: HubKey, claims: AckClaims) -> str:
    """The token of `claims`, signed with the hub's key (HS256, its `kid` in the header)."""
    payload: dict[str, object] = {
        "iss": HUB_ISSUER,
        "aud": ACK_AUDIENCE,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.jti,
        "tenant": claims.tenant,
        "site": claims.site,
        "inc": claims.incident_id,
        "ep": claims.endpoint_id,
    }
    if claims.name:
        payload["name"] = claims.name
    return jwt.encode(payload, key.secret, algorithm=HUB_ALGORITHM, headers={"kid": key.kid})


def token_kid(token: str) -> str:
    """The `kid` the token names (unverified: only to find the key to verify it with)."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AckTokenInvalid("malformed")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AckTokenInvalid("malformed") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AckTokenInvalid("no kid")
    return kid


def read_ack(token: str, secret: bytes, *, now: float) -> AckClaims:
    """The claims of a token signed with `secret`, checked: signature, algorithm, issuer,
    audience, expiry at `now`, and every claim present and a string where it must be."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[HUB_ALGORITHM],
            audience=ACK_AUDIENCE,
            issuer=HUB_ISSUER,
            # Expiry is checked below against `now` (the caller's clock, a test's too).
            options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidAudienceError:
        raise AckTokenInvalid("wrong audience") from None
    except jwt.InvalidSignatureError:
        raise AckTokenInvalid("bad signature") from None
    except jwt.PyJWTError as err:
        raise AckTokenInvalid(f"invalid: {type(err).__name__}") from None
    expires = claims["exp"]
    if not isinstance(expires, int) or now >= expires:
        raise AckTokenInvalid("expired")
    texts = {name: claims.get(name) for name in ("tenant", "site", "inc", "ep", "jti")}
    if not all(isinstance(value, str) and value for value in texts.values()):
        raise AckTokenInvalid("a claim is missing or not a string")
    name = claims.get("name", "")
    issued = claims["iat"]
    return AckClaims(
        tenant=str(texts["tenant"]),
        site=str(texts["site"]),
        incident_id=str(texts["inc"]),
        endpoint_id=str(texts["ep"]),
        jti=str(texts["jti"]),
        name=name if isinstance(name, str) else "",
        issued_at=issued if isinstance(issued, int) else 0,
        expires_at=expires,
    )
