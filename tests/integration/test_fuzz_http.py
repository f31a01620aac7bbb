"""Fuzz the whole HTTP surface of a real hub: no answer is a 5xx (but a documented 503), and every
4xx is problem+json.

Schemathesis generates requests from `openapi.yaml` (valid and invalid ones, for every operation);
hypothesis adds what a schema does not describe: arbitrary bodies, media types, encodings and
query strings. Examples are bounded so the module takes well under a minute.

The hub runs in a thread with its own event loop: schemathesis calls it synchronously.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
import uuid
import zlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, hub_config, with_database

pytestmark = pytest.mark.integration
T = TypeVar("T")

SCHEMA = schemathesis.openapi.from_path(REPO / "openapi.yaml")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure here is reproducible
    database=None,
)


@dataclass
class FuzzedHub:
    url: str
    keys: dict[str, str]
    session: requests.Session


class _HubThread:
    """A hub on its own loop in a thread, with a database of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _create_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _ndjson(_: Any, value: Any) -> bytes:
    # The schema describes NDJSON as a string; negative examples may be anything.
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else _encode(value)


schemathesis.serializer("application/x-ndjson")(_ndjson)


@pytest.fixture(scope="module")
def fuzzed_hub(nats_server_url: str, postgres_admin_url: str) -> Iterator[FuzzedHub]:
    runner = _HubThread()
    name = f"t_{uuid.uuid4().hex[:16]}"
    runner.run(_create_database(postgres_admin_url, name))
    hub = Hub(hub_config(), REPO, Endpoints(nats_server_url, with_database(postgres_admin_url, name)))
    runner.run(hub.start())
    try:
        keys = {
            role: runner.run(create_key(hub.pool, tenant="ulsan-refining", role=role))
            for role in ("admin", "gateway", "viewer")
        }
        with requests.Session() as session:
            yield FuzzedHub(hub.http_url, keys, session)
    finally:
        runner.run(hub.stop())
        runner.run(_drop_database(postgres_admin_url, name))
        runner.close()


def _content_type(headers: Any) -> str:
    # requests' headers map names to values; schemathesis' to lists of values.
    for name, value in headers.items():
        if name.lower() == "content-type":
            return str(value[0] if isinstance(value, list) else value)
    return ""


def assert_answer_is_sound(status: int, headers: Any, body: bytes, what: str) -> None:
    content_type = _content_type(headers)
    if status >= 500:
        # 503 is documented (bus or database unreachable, connection limit); nothing else is.
        assert status == 503, f"{what} -> {status}: {body[:300]!r}"
    if 400 <= status < 600:
        assert content_type.startswith("application/problem+json"), f"{what} -> {status} as {content_type}"


# The live stream never ends by itself: schemathesis reads an event stream until its timeout,
# so it has a test of its own with a short one.
STREAM = "/v1/stream"


@SCHEMA.exclude(path=STREAM).parametrize()
@FUZZ
def test_every_operation_answers_soundly(case: schemathesis.Case, fuzzed_hub: FuzzedHub) -> None:
    # Half the examples with a valid admin key (which may post and read), so generation reaches
    # past authentication; the rest with whatever schemathesis made up.
    if case.headers is None or "Authorization" not in case.headers:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzzed_hub.keys['admin']}"}
    response = case.call(base_url=fuzzed_hub.url, session=fuzzed_hub.session, timeout=30)
    assert_answer_is_sound(
        response.status_code, response.headers, response.content, f"{case.method} {case.formatted_path}"
    )


@SCHEMA.include(path=STREAM).parametrize()
@settings(FUZZ, max_examples=20)
def test_the_live_stream_answers_soundly(case: schemathesis.Case, fuzzed_hub: FuzzedHub) -> None:
    if case.headers is None or "Authorization" not in case.headers:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzzed_hub.keys['admin']}"}
    # A short read: the stream is cut after it (the answer and its first lines are what is checked).
    response = case.call(base_url=fuzzed_hub.url, session=fuzzed_hub.session, timeout=3.0)
    what = f"GET {case.formatted_path}"
    assert_answer_is_sound(response.status_code, response.headers, response.content, what)
    if response.status_code == 200:
        assert _content_type(response.headers) == "text/event-stream"
        assert response.content.startswith(b"retry: 2000\n")


_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "text/plain",
        "",
        "application/json; charset=utf-8",
    ]
)
_ENCODINGS = st.sampled_from([None, "gzip", "deflate", "br", "identity", "gzip, gzip"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_OBSERVATION = st.fixed_dictionaries(
    {
        "site": st.sampled_from(["ulsan-refinery", "nowhere", ""]),
        "device": st.sampled_from(["gd-cdu1-101", "x"]),
    },
    optional={
        "kind": st.sampled_from(["gas.h2s", "gas.lel", "flame"]) | st.text(max_size=8),
        "value": st.floats() | st.integers() | st.text(max_size=4) | st.none(),
        "time": st.datetimes().map(lambda t: t.isoformat()) | st.text(max_size=30),
        "quality": st.sampled_from(["good", "bad", "ok"]) | st.text(max_size=5),
        "attributes": st.dictionaries(st.text(max_size=70), st.text(max_size=10) | st.integers(), max_size=3),
        "id": st.text(max_size=20),
        "box": st.dictionaries(st.sampled_from(["x", "y", "width", "height", "z"]), st.floats(), max_size=5),
    },
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _compress(encoding: str | None, body: bytes) -> bytes:
    # Mostly well-compressed bodies for the encodings that are accepted, so the parser sees them.
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


# Bodies that once answered 500, or nearly: deep nesting, numbers beyond a float, NULs.
_NASTY_BODIES = [
    b"[" * 1000 + b"]" * 1000,
    b'{"a":' * 1500 + b"1" + b"}" * 1500,
    b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1e400}',
    b'[{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":-1e999}]',
    b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas\\u0000","value":1}',
    b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1,"attributes":{"\\u0000":""}}',
    b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1,"time":"0001-01-01T00:00:00+23:59"}',
    b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1,"time":"9999-12-31T23:59:59-23:59"}',
    b"[]",
    b"",
    b"\n\n",
]
_BODIES = st.one_of(
    st.sampled_from(_NASTY_BODIES),
    st.binary(max_size=300),
    _JSON.map(_encode),
    st.lists(_OBSERVATION, max_size=5).map(_encode),
    _OBSERVATION.map(_encode),
    st.lists(_OBSERVATION.map(_encode), max_size=4).map(b"\n".join),
    st.sampled_from([10, 999, 1000, 3000]).map(lambda depth: b"[" * depth + b"]" * depth),
)


def _post(hub: FuzzedHub, headers: dict[str, str], data: bytes) -> None:
    response = hub.session.post(hub.url + "/v1/observations", data=data, headers=headers, timeout=30)
    assert_answer_is_sound(
        response.status_code, response.headers, response.content, f"POST {headers} {data[:80]!r}"
    )


@settings(FUZZ, max_examples=150)
@given(body=_BODIES, ndjson=st.booleans())
def test_any_body_answers_soundly(fuzzed_hub: FuzzedHub, body: bytes, ndjson: bool) -> None:
    content_type = "application/x-ndjson" if ndjson else "application/json"
    _post(fuzzed_hub, {"Content-Type": content_type, **_auth(fuzzed_hub, "gateway")}, body)


@pytest.mark.parametrize("key", ["gateway", "viewer", None])
@settings(FUZZ, max_examples=40)
@given(content_type=_TYPES, encoding=_ENCODINGS, body=_BODIES, compressed=st.booleans())
def test_any_headers_answer_soundly(
    fuzzed_hub: FuzzedHub,
    key: str | None,
    *,
    content_type: str,
    encoding: str | None,
    body: bytes,
    compressed: bool,
) -> None:
    headers = {"Content-Type": content_type, **_auth(fuzzed_hub, key)}
    if encoding:
        headers["Content-Encoding"] = encoding
    _post(fuzzed_hub, headers, _compress(encoding, body) if compressed else body)


def _auth(hub: FuzzedHub, key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.keys[key]}"} if key else {}


# Values that once answered 500: NULs, times with no UTC instant, non-ASCII digits.
_NASTY_TEXT = ["\x00", "a\x00b", "\u0665", "\ud7ff", "%00", "+", " ", "\\", "'", '"', "é" * 40]
_NASTY_TIMES = [
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00Z",
    "20261122T000000Z",
    "2026-11-22T00:00:00 09:00",
    "2026-11-22T24:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-22T00:00:00.1234567891+00:00",
]
_TEXT = st.sampled_from(_NASTY_TEXT) | st.text(max_size=70)
_TIMES = st.one_of(
    st.sampled_from(_NASTY_TIMES),
    st.datetimes().map(lambda t: t.isoformat()),
    st.builds(
        lambda year, sign, hours, minutes: f"{year:04d}-01-01T00:00:00{sign}{hours:02d}:{minutes:02d}",
        st.sampled_from([1, 2, 1970, 2026, 9999]),
        st.sampled_from(["+", "-"]),
        st.integers(0, 99),
        st.integers(0, 99),
    ),
    st.text(max_size=30),
)
_CURSORS = st.one_of(
    _TEXT,
    st.tuples(_TIMES | _JSON, _TEXT | _JSON).map(
        lambda pair: base64.urlsafe_b64encode(_encode(list(pair))).decode().rstrip("=")
    ),
)
_VALUES = {
    "site": st.sampled_from(["ulsan-refinery", "mipo-aromatics"]) | _TEXT,
    "device": st.sampled_from(["gd-cdu1-101"]) | _TEXT,
    "kind": st.sampled_from(["gas.h2s"]) | _TEXT,
    "since": _TIMES,
    "until": _TIMES,
    "limit": st.integers(-5, 5000).map(str) | _TEXT,
    "cursor": _CURSORS,
}
_PARAMS = st.lists(
    st.one_of(
        *(st.tuples(st.just(name), values) for name, values in _VALUES.items()),
        st.tuples(st.text(max_size=8), st.text(max_size=8)),
    ),
    max_size=5,
)


@settings(FUZZ, max_examples=150)
@given(params=_PARAMS, key=st.sampled_from(["viewer", "admin", "gateway"]))
def test_any_query_answers_soundly(fuzzed_hub: FuzzedHub, params: list[tuple[str, str]], key: str) -> None:
    query = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params)
    response = fuzzed_hub.session.get(
        f"{fuzzed_hub.url}/v1/observations?{query}",
        headers={"Authorization": f"Bearer {fuzzed_hub.keys[key]}"},
        timeout=30,
    )
    assert_answer_is_sound(response.status_code, response.headers, response.content, f"GET ?{query}")
