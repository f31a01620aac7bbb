"""The base of acknowledgement links: `http.public_url` is an absolute http(s) URL or nothing, and
the demo fills it with its own address when unset."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.common.errors import ConfigError
from services.common.settings import HttpConfig
from services.hub.demo import with_demo_public_url
from services.hub.registry import REGISTRY


def test_a_public_url_is_an_absolute_http_url_or_nothing(tmp_path: Path) -> None:
    config, _ = REGISTRY.load_config(None, env={})
    assert config.http.public_url == ""
    path = tmp_path / "hub.yaml"
    path.write_text("http:\n  public_url: https://hub.example.org/safety\n")
    config, _ = REGISTRY.load_config(path, env={})
    assert config.http.public_url == "https://hub.example.org/safety"
    for bad in ("hub.example.org", "ftp://hub.example.org", "https://hub.example.org/a b", "https://"):
        path.write_text(f"http:\n  public_url: '{bad}'\n")
        with pytest.raises(ConfigError, match="public_url"):
            REGISTRY.load_config(path, env={})


def test_the_demo_links_to_itself_unless_told_otherwise() -> None:
    base, _ = REGISTRY.load_config(None, env={})
    assert with_demo_public_url(base).http.public_url == "http://127.0.0.1:8080"
    anywhere = msgspec.structs.replace(base, http=HttpConfig(host="0.0.0.0", port=9000))
    assert with_demo_public_url(anywhere).http.public_url == "http://127.0.0.1:9000"
    told = msgspec.structs.replace(base, http=HttpConfig(public_url="https://hub.example.org"))
    assert with_demo_public_url(told).http.public_url == "https://hub.example.org"
    # A port picked at start has no address before it: no link rather than a wrong one.
    assert with_demo_public_url(msgspec.structs.replace(base, http=HttpConfig(port=0))).http.public_url == ""
