"""An endpoint: where incidents are delivered, in which format and language, and which incidents
it takes (sites, minimum severity, types). Pure: validation and matching, no I/O.

A URL is refused unless it is http or https with a host, and refused when it points at the hub
itself (a loop: the hub would post its own notifications to its own API). What "itself" is, is
given by the caller (the addresses the request reached the hub at), so the check needs no network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

FORMATS = ("json", "cap")
LANGUAGES = ("ko", "en")
# CAP 1.2 severities, least to most severe: an endpoint's minimum is compared by this rank.
SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
# Headers the delivery sets itself: an endpoint's extra headers may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}\Z")  # RFC 9110 field-name
_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]{0,1024}\Z")  # no CR, LF or other controls
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidEndpoint(ValueError):
    """An endpoint field that cannot be: `field` names it (dotted for nested fields)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class HubAddress:
    """One address the hub answers at: a host name or IP literal and a port."""

    host: str
    port: int


def _is_local(host: str) -> bool:
    if host.lower().rstrip(".") in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_url(url: str, hub: Iterable[HubAddress]) -> str:
    """The URL as given when an endpoint may use it; InvalidEndpoint("url", ...) otherwise."""
    if len(url) > 2048:
        raise InvalidEndpoint("url", "at most 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise InvalidEndpoint("url", f"not a URL: {err}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise InvalidEndpoint("url", "the scheme must be http or https")
    host = parts.hostname
    if not host:
        raise InvalidEndpoint("url", "a host is required")
    if parts.username is not None or parts.password is not None:
        raise InvalidEndpoint("url", "no credentials in the URL: send them as extra headers")
    if parts.fragment:
        raise InvalidEndpoint("url", "no fragment: it is never sent")
    if any(ch.isspace() for ch in url):
        raise InvalidEndpoint("url", "no white space")
    port = port if port is not None else _DEFAULT_PORTS[parts.scheme]
    for address in hub:
        same_port = address.port == port
        same_host = host.lower() == address.host.lower() or (_is_local(host) and _is_local(address.host))
        if same_port and (same_host or (_is_local(host) and address.host in ("", "0.0.0.0", "::"))):
            raise InvalidEndpoint("url", "points at the hub itself")
    return url


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Extra headers an endpoint sends with every delivery (an API key of the receiver, say)."""
    if len(headers) > 20:
        raise InvalidEndpoint("headers", "at most 20 extra headers")
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise InvalidEndpoint(f"headers.{name}", "not a header name (RFC 9110 token)")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidEndpoint(f"headers.{name}", "set by the delivery itself; choose another header")
        if name.lower() in seen:
            raise InvalidEndpoint(f"headers.{name}", "given twice (header names ignore case)")
        if not _VALUE.match(value):
            raise InvalidEndpoint(f"headers.{name}", "at most 1024 characters, no line breaks or controls")
        seen.add(name.lower())
        checked[name] = value
    return checked


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """Which incidents an endpoint takes; None: any."""

    sites: frozenset[str] | None = None
    min_severity: str = "Unknown"
    types: frozenset[str] | None = None

    def takes(self, *, site: str, severity: str, incident_type: str) -> bool:
        if self.sites is not None and site not in self.sites:
            return False
        if self.types is not None and incident_type not in self.types:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity]
