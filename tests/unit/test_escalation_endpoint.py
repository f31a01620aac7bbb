"""Endpoints: which URLs are refused (schemes, the hub itself), extra headers, and which incidents
an endpoint takes."""

from __future__ import annotations

import typing

import pytest

from services.escalation.api_bodies import Format, IncidentTypeName, Language, Severity
from services.escalation.domain.endpoint import (
    FORMATS,
    LANGUAGES,
    SEVERITIES,
    Filter,
    HubAddress,
    InvalidEndpoint,
    check_headers,
    check_url,
)
from services.incidents.domain.model import IncidentType
from services.incidents.domain.model import Severity as IncidentSeverity

HUB = [HubAddress("hub.example.org", 443), HubAddress("127.0.0.1", 8080)]


@pytest.mark.parametrize(
    "url",
    [
        "https://control-room.example.org/hooks/safetyhub",
        "http://10.0.0.5:9000/in",
        "http://127.0.0.1:9001/receiver",  # a receiver beside the hub, on another port
        "https://hub.example.org:8443/elsewhere",
    ],
)
def test_http_and_https_urls_elsewhere_are_taken(url: str) -> None:
    assert check_url(url, HUB) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("example.org/hook", "scheme"),
        ("https:///nohost", "host"),
        ("https://user:pw@example.org/", "credentials"),
        ("https://example.org:99999/", "URL"),
        ("https://example.org/a b", "white space"),
        ("https://hub.example.org/v1/endpoints", "hub itself"),  # 443 by default
        ("http://localhost:8080/v1/incidents", "hub itself"),
        ("http://127.0.0.1:8080/", "hub itself"),
        ("http://[::1]:8080/", "hub itself"),
        ("http://0.0.0.0:8080/", "hub itself"),
    ],
)
def test_other_schemes_and_the_hub_itself_are_refused_naming_the_url(url: str, why: str) -> None:
    with pytest.raises(InvalidEndpoint) as refused:
        check_url(url, HUB)
    assert refused.value.field == "url"
    assert why in refused.value.detail


def test_a_hub_listening_on_every_interface_is_itself_at_any_loopback_name() -> None:
    hub = [HubAddress("0.0.0.0", 8080)]
    with pytest.raises(InvalidEndpoint):
        check_url("http://localhost:8080/", hub)
    assert check_url("http://localhost:8081/", hub)


def test_extra_headers_may_not_replace_the_delivery_s_own_or_carry_line_breaks() -> None:
    assert check_headers({"Authorization": "Bearer abc", "X-Site": "ulsan"}) == {
        "Authorization": "Bearer abc",
        "X-Site": "ulsan",
    }
    for headers, field in [
        ({"webhook-signature": "v1,forged"}, "headers.webhook-signature"),
        ({"Content-Type": "text/plain"}, "headers.Content-Type"),
        ({"X-Bad": "a\r\nInjected: yes"}, "headers.X-Bad"),
        ({"Bad Name": "x"}, "headers.Bad Name"),
        ({"X-A": "1", "x-a": "2"}, "headers.x-a"),
    ]:
        with pytest.raises(InvalidEndpoint) as refused:
            check_headers(headers)
        assert refused.value.field == field


def test_the_filter_takes_sites_types_and_severities_at_or_above_the_minimum() -> None:
    f = Filter(sites=frozenset({"ulsan-refinery"}), min_severity="Severe", types=frozenset({"gas_release"}))
    assert f.takes(site="ulsan-refinery", severity="Extreme", incident_type="gas_release")
    assert f.takes(site="ulsan-refinery", severity="Severe", incident_type="gas_release")
    assert not f.takes(site="ulsan-refinery", severity="Moderate", incident_type="gas_release")
    assert not f.takes(site="ulsan-refinery-east", severity="Extreme", incident_type="gas_release")
    assert not f.takes(site="ulsan-refinery", severity="Extreme", incident_type="fire")
    assert Filter().takes(site="any", severity="Unknown", incident_type="intrusion")


def test_the_api_s_vocabulary_is_the_incidents_own() -> None:
    assert set(typing.get_args(IncidentTypeName)) == {t.value for t in IncidentType}
    assert set(typing.get_args(Severity)) == {s.value for s in IncidentSeverity} == set(SEVERITIES)
    assert set(typing.get_args(Format)) == set(FORMATS)
    assert set(typing.get_args(Language)) == set(LANGUAGES)
