"""The city platform's NATS credentials, against a real nats-server started with the generated config.

A city user, alone in an account of its own, reads FEED through the durable consumer the hub made
for it and replays it from a time or a sequence (with scripts/city_consumer.py, as a city system
would); everything else is refused by the server itself, and no reply subject it names puts
anything into a hub stream; adding or revoking a user reloads the server without dropping the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.embedded import EmbeddedNats
from services.common.embedded._process import free_port
from services.common.embedded.nats_auth import load_users
from services.common.embedded.nats_server import find_nats_server
from services.common.redact import redact
from services.feed import credentials
from tests.conftest import REPO, reachable_temp_dir

pytestmark = pytest.mark.integration

STREAMS = {"FEED": "feed.>", "OBSERVATIONS": "obs.>", "ALARMS": "alarm.>", "INCIDENTS": "incident.>"}
CONSUMER = [sys.executable, str(REPO / "scripts" / "city_consumer.py")]


@dataclass
class Feed:
    server: EmbeddedNats
    data_dir: Path
    hub: NATS
    hub_disconnects: list[str] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.data_dir.resolve() / "nats"

    @property
    def address(self) -> str:
        return urlsplit(self.server.url).netloc.rsplit("@", 1)[1]

    def url_of(self, credential: credentials.NewCredential) -> str:
        return f"nats://{credential.name}:{credential.secret}@{self.address}"

    async def add_city(self, name: str) -> credentials.NewCredential:
        credential = await asyncio.to_thread(
            credentials.new_credential, name, now=datetime.now(UTC), by="test"
        )
        assert await asyncio.to_thread(credentials.add, self.store, credential) is True
        assert await credentials.ensure_durable(self.hub.jetstream(), name) is True  # the hub's part
        return credential

    async def publish(self, count: int, start: int = 0) -> list[int]:
        js = self.hub.jetstream()
        seqs = []
        for i in range(start, start + count):
            event = {"specversion": "1.0", "id": f"ev-{i}", "type": "org.safetyhub.incident.opened.v1"}
            ack = await js.publish("feed.ulsan-refining.onsan-plant.incident", json.dumps(event).encode())
            seqs.append(ack.seq)
        return seqs


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = reachable_temp_dir("safetyhub-feed-")
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def feed(data_dir: Path) -> AsyncIterator[Feed]:
    server = EmbeddedNats(data_dir)
    await server.start()
    disconnects: list[str] = []

    async def disconnected() -> None:
        disconnects.append("disconnected")

    hub = await nats.connect(server.url, disconnected_cb=disconnected)
    js = hub.jetstream()
    for name, subjects in STREAMS.items():
        await js.add_stream(name=name, subjects=[subjects])
    await js.add_consumer(
        "INCIDENTS", ConsumerConfig(durable_name="incidents", ack_policy=AckPolicy.EXPLICIT)
    )
    try:
        yield Feed(server, data_dir, hub, disconnects)
    finally:
        await hub.close()
        await server.stop()


class City:
    """A city system's connection, recording what the server refused."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: NATS | None = None

    async def connect(self, url: str, name: str) -> NATS:
        async def on_error(err: Exception) -> None:
            self.errors.append(str(err).lower())

        self.nc = await nats.connect(
            url, inbox_prefix=credentials.inbox_prefix(name), error_cb=on_error, allow_reconnect=False
        )
        return self.nc

    async def refused(self, what: str, subject: str) -> None:
        expected = f'permissions violation for {what} to "{subject.lower()}"'
        for _ in range(200):
            if any(expected in err for err in self.errors):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {expected!r} among {self.errors}")


def _follow(url: str, *args: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [*CONSUMER, "--url", url, "--idle-exit", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_a_city_replays_feed_from_a_time_and_from_a_sequence_then_resumes(feed: Feed) -> None:
    city = await feed.add_city("city-ulsan")
    url = feed.url_of(city)
    early = await feed.publish(3)
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC)
    late = await feed.publish(3, start=3)

    since = await asyncio.to_thread(_follow, url, "--since", cut.isoformat())
    assert [line["seq"] for line in since] == late
    assert [line["event"]["id"] for line in since] == ["ev-3", "ev-4", "ev-5"]  # type: ignore[index]
    assert all(line["subject"] == "feed.ulsan-refining.onsan-plant.incident" for line in since)

    from_seq = await asyncio.to_thread(_follow, url, "--from-seq", str(early[1]))
    assert [line["seq"] for line in from_seq] == early[1:] + late

    # Without a start it resumes its durable consumer: everything was acknowledged, so only
    # what was published since comes.
    newer = await feed.publish(1, start=6)
    resumed = await asyncio.to_thread(_follow, url)
    assert [line["seq"] for line in resumed] == newer

    info = await feed.hub.jetstream().consumer_info("FEED", "city-ulsan")
    assert info.num_ack_pending == 0 and info.delivered.stream_seq == newer[0]

    # A time after the last event: nothing is replayed, and what comes later is.
    assert await asyncio.to_thread(_follow, url, "--since", datetime.now(UTC).isoformat()) == []
    latest = await feed.publish(1, start=7)
    assert [line["seq"] for line in await asyncio.to_thread(_follow, url)] == latest


async def test_the_consumer_script_says_when_the_hub_has_not_made_the_durable_yet(feed: Feed) -> None:
    credential = await asyncio.to_thread(
        credentials.new_credential, "city-busan", now=datetime.now(UTC), by="test"
    )
    await asyncio.to_thread(credentials.add, feed.store, credential)
    result = await asyncio.to_thread(
        subprocess.run,
        [*CONSUMER, "--url", feed.url_of(credential), "--idle-exit", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "the hub creates it" in result.stderr
    # ensure_durables makes the missing one, once.
    assert await credentials.ensure_durables(feed.hub.jetstream(), feed.store) == ["city-busan"]
    assert await credentials.ensure_durables(feed.hub.jetstream(), feed.store) == []

    # A push consumer of a city's name, delivering to a hub subject, is replaced by the pull one.
    hub_js = feed.hub.jetstream()
    await hub_js.delete_consumer("FEED", "city-busan")
    await hub_js.add_consumer("FEED", ConsumerConfig(durable_name="city-busan", deliver_subject="obs.x"))
    assert await credentials.ensure_durables(hub_js, feed.store) == ["city-busan"]
    assert (await hub_js.consumer_info("FEED", "city-busan")).config.deliver_subject is None


async def test_a_city_may_touch_nothing_but_its_own_feed_consumer(feed: Feed) -> None:
    cred = await feed.add_city("city-ulsan")
    await feed.add_city("city-busan")
    city = City()
    nc = await city.connect(feed.url_of(cred), cred.name)
    seen: list[str] = []

    async def got(msg: nats.aio.msg.Msg) -> None:
        seen.append(msg.subject)

    for subject in (
        "obs.>",
        "alarm.>",
        "incident.>",
        "feed.>",
        "_INBOX.>",
        "$JS.ACK.>",
        "_INBOX_city-busan.>",
    ):
        await nc.subscribe(subject, cb=got)
        await city.refused("subscription", subject)
    hub_js = feed.hub.jetstream()
    await hub_js.publish("obs.ulsan-refining.onsan-plant.gd-101", b"reading")
    await hub_js.publish("alarm.ulsan-refining.onsan-plant.a1", b"alarm")
    await hub_js.publish("incident.ulsan-refining.onsan-plant.i1", b"incident")

    await nc.publish("feed.ulsan-refining.onsan-plant.incident", b'{"forged": true}')
    await city.refused("publish", "feed.ulsan-refining.onsan-plant.incident")
    assert (await hub_js.stream_info("FEED")).state.messages == 0

    js = nc.jetstream(timeout=0.5)
    # nats-py names a durable consumer in DURABLE.CREATE, an ephemeral one in CREATE.
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "$JS.API.CONSUMER.DURABLE.CREATE.OBSERVATIONS.city-ulsan": lambda: js.add_consumer(
            "OBSERVATIONS", ConsumerConfig(durable_name="city-ulsan")
        ),
        "$JS.API.CONSUMER.DURABLE.CREATE.INCIDENTS.city-ulsan": lambda: js.add_consumer(
            "INCIDENTS", ConsumerConfig(durable_name="city-ulsan")
        ),
        "$JS.API.CONSUMER.INFO.INCIDENTS.incidents": lambda: js.consumer_info("INCIDENTS", "incidents"),
        "$JS.API.CONSUMER.MSG.NEXT.INCIDENTS.incidents": lambda: nc.request(
            "$JS.API.CONSUMER.MSG.NEXT.INCIDENTS.incidents", b'{"batch": 1}', timeout=0.5
        ),
        "$JS.API.STREAM.INFO.OBSERVATIONS": lambda: js.stream_info("OBSERVATIONS"),
        "$JS.API.CONSUMER.DURABLE.CREATE.FEED.city-busan": lambda: js.add_consumer(
            "FEED", ConsumerConfig(durable_name="city-busan")
        ),
        "$JS.API.CONSUMER.CREATE.FEED": lambda: js.add_consumer("FEED", ConsumerConfig()),  # ephemeral
        # Not even its own: a consumer it could shape could deliver where it chose.
        "$JS.API.CONSUMER.DURABLE.CREATE.FEED.city-ulsan": lambda: js.add_consumer(
            "FEED", ConsumerConfig(durable_name="city-ulsan", deliver_subject="obs.x")
        ),
        "$JS.API.CONSUMER.DELETE.FEED.city-ulsan": lambda: js.delete_consumer("FEED", "city-ulsan"),
        "$JS.API.STREAM.DELETE.FEED": lambda: js.delete_stream("FEED"),
        "$JS.API.INFO": js.account_info,
    }
    for subject, attempt in attempts.items():
        with pytest.raises(nats.errors.TimeoutError):
            await attempt()
        await city.refused("publish", subject)
    for stream in ("OBSERVATIONS", "INCIDENTS"):
        names = [c.name for c in await hub_js.consumers_info(stream)]
        assert names == (["incidents"] if stream == "INCIDENTS" else [])
    assert sorted(c.name for c in await hub_js.consumers_info("FEED")) == ["city-busan", "city-ulsan"]
    assert (await hub_js.consumer_info("FEED", "city-ulsan")).config.deliver_subject is None

    # Its own consumer on FEED works on the same connection, through the hub's imported API.
    hub_api = nc.jetstream(prefix=credentials.API_PREFIX, timeout=2)
    assert (await hub_api.consumer_info("FEED", "city-ulsan")).name == "city-ulsan"
    assert (await hub_api.stream_info("FEED")).config.name == "FEED"
    with pytest.raises(nats.errors.TimeoutError):
        await hub_api.stream_info("OBSERVATIONS")
    await city.refused("publish", f"{credentials.API_PREFIX}.STREAM.INFO.OBSERVATIONS")
    # A push consumer delivering onto a hub subject cannot be made through the hub's API either.
    with pytest.raises(nats.errors.TimeoutError):
        await hub_api.add_consumer("FEED", ConsumerConfig(durable_name="city-x", deliver_subject="obs.x"))
    await city.refused("publish", f"{credentials.API_PREFIX}.CONSUMER.DURABLE.CREATE.FEED.city-x")
    assert sorted(c.name for c in await hub_js.consumers_info("FEED")) == ["city-busan", "city-ulsan"]
    await asyncio.sleep(0.1)
    assert seen == []
    await nc.close()


async def _stored(js: JetStreamContext) -> dict[str, tuple[int, int]]:
    """Messages and consumers of every stream, as the hub sees them."""
    state = {}
    for name in STREAMS:
        info = await js.stream_info(name)
        state[name] = (info.state.messages, info.state.consumer_count)
    return state


async def test_no_reply_subject_a_city_names_puts_anything_into_a_hub_stream(feed: Feed) -> None:
    cred = await feed.add_city("city-ulsan")
    await feed.publish(3)
    hub_js = feed.hub.jetstream()
    # The hub itself listens on the subjects a reply might be aimed at.
    heard: list[str] = []

    async def hub_heard(msg: nats.aio.msg.Msg) -> None:
        heard.append(msg.subject)

    # (Not `$JS.API.>`: there it would hear the city's own requests, as the hub's account imports
    # them; stream and consumer state below show that no answer acted as an API request.)
    for subject in ("obs.>", "alarm.>", "incident.>", "feed.>"):
        await feed.hub.subscribe(subject, cb=hub_heard)
    await feed.hub.flush()
    before = await _stored(hub_js)
    assert before["FEED"] == (3, 1)

    city = City()
    nc = await city.connect(feed.url_of(cred), cred.name)
    targets = (
        "obs.ulsan-refining.onsan-plant.gd-101",
        "obs.x",
        "incident.x",
        "alarm.x",
        "feed.x",
        "$JS.API.STREAM.DELETE.OBSERVATIONS",
        "$JS.API.STREAM.PURGE.INCIDENTS",
        "$JS.API.CONSUMER.DELETE.INCIDENTS.incidents",
    )
    api = credentials.API_PREFIX
    # Every service the city may use, answered to a subject of the city's choosing. The resets
    # first: one after the pulls could take the delivered count back to zero.
    for reply in targets:
        await nc.publish(f"{api}.CONSUMER.RESET.FEED.city-ulsan", b'{"seq": 1}', reply=reply)
    await nc.flush()
    for reply in targets:
        await nc.publish(f"{api}.CONSUMER.MSG.NEXT.FEED.city-ulsan", b'{"batch": 3}', reply=reply)
        await nc.publish(f"{api}.CONSUMER.INFO.FEED.city-ulsan", b"", reply=reply)
        await nc.publish(f"{api}.STREAM.INFO.FEED", b"", reply=reply)
        await nc.publish(f"{api}.STREAM.MSG.GET.FEED", b'{"seq": 1}', reply=reply)
    await nc.flush()

    # The answers were made (the consumer delivered its messages)...
    async def delivered() -> bool:
        return (await hub_js.consumer_info("FEED", "city-ulsan")).delivered.stream_seq > 0

    for _ in range(500):
        if await delivered():
            break
        await asyncio.sleep(0.01)
    assert await delivered()
    await asyncio.sleep(0.3)
    # ...but went back into the city's account: no hub stream and no hub subscriber got any.
    assert await _stored(hub_js) == before
    assert heard == []
    assert (await hub_js.consumer_info("INCIDENTS", "incidents")).name == "incidents"

    # The same requests with the city's own inbox are answered as usual.
    answer = await nc.request(f"{api}.STREAM.MSG.GET.FEED", b'{"seq": 2}', timeout=2)
    assert json.loads(answer.data)["message"]["seq"] == 2
    assert city.errors == []
    await nc.close()


async def test_adding_a_user_keeps_the_hub_and_revoking_ends_the_users_access(feed: Feed) -> None:
    hub_js = feed.hub.jetstream()
    city_cred = await feed.add_city("city-ulsan")
    city = City()
    closed = asyncio.Event()
    nc = await nats.connect(
        feed.url_of(city_cred),
        inbox_prefix=credentials.inbox_prefix("city-ulsan"),
        allow_reconnect=False,
        closed_cb=_setter(closed),
        error_cb=_recorder(city.errors),
    )
    js = nc.jetstream(prefix=credentials.API_PREFIX, timeout=2)
    await feed.publish(2)
    sub = await js.pull_subscribe_bind("city-ulsan", "FEED")
    assert len(await sub.fetch(2, timeout=2)) == 2

    # A second user added: the server reloads, the city and the hub stay connected.
    await feed.add_city("city-busan")
    await feed.publish(1, start=2)
    assert len(await sub.fetch(1, timeout=2)) == 1
    assert nc.is_connected

    revoked = await asyncio.to_thread(
        credentials.revoke, feed.store, "city-ulsan", now=datetime.now(UTC), by="test"
    )
    assert revoked is True
    await asyncio.wait_for(closed.wait(), 5)  # the server closed the revoked user's connection
    assert await _login(feed.address, "city-ulsan", city_cred.secret) == "-ERR 'Authorization Violation'"

    # The hub never noticed: same connection, still storing.
    assert feed.hub_disconnects == [] and feed.hub.is_connected
    await hub_js.publish("obs.ulsan-refining.onsan-plant.gd-101", b"reading")
    assert (await hub_js.stream_info("OBSERVATIONS")).state.messages == 1
    users = {u.user: u for u in load_users(feed.store)}
    assert users["city-ulsan"].revoked_at is not None and users["city-busan"].revoked_at is None


async def test_a_user_added_while_no_server_runs_is_in_force_at_the_next_start(data_dir: Path) -> None:
    store = await asyncio.to_thread(data_dir.resolve) / "nats"
    cred = await asyncio.to_thread(credentials.new_credential, "city-ulsan", now=datetime.now(UTC), by="test")
    assert await asyncio.to_thread(credentials.add, store, cred) is False  # nothing to reload
    server = EmbeddedNats(data_dir)
    url = await server.start()
    try:
        address = urlsplit(url).netloc.rsplit("@", 1)[1]
        assert await _login(address, "city-ulsan", cred.secret) == "PONG"
        assert await _login(address, "city-ulsan", "guessed") == "-ERR 'Authorization Violation'"
        assert await _login(address, None, None) == "-ERR 'Authorization Violation'"
    finally:
        await server.stop()
    for name in ("hub.secret", "users.json", "nats-server.conf"):
        assert (store / name).stat().st_mode & 0o777 == 0o600, name
    config = (store / "nats-server.conf").read_text()
    assert cred.secret not in config and cred.user.password_hash in config
    secret = (store / "hub.secret").read_text().strip()
    assert secret in url and secret not in redact(url)


def test_a_name_that_cannot_be_a_user_and_a_consumer_is_refused() -> None:
    for bad in ("City-Ulsan", "city ulsan", "city.ulsan", "city-*", "c", "hub", "9city", "city-"):
        with pytest.raises(credentials.FeedCredentialsError, match="--name"):
            credentials.check_name(bad)
    assert credentials.check_name("city-ulsan") == "city-ulsan"


async def _login(address: str, user: str | None, password: str | None) -> str:
    """The server's first answer to CONNECT + PING, in the raw protocol: PONG or its -ERR."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        connect = {"verbose": False, "pedantic": False, "protocol": 1}
        if user is not None:
            connect |= {"user": user, "pass": password}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _setter(event: asyncio.Event):  # type: ignore[no-untyped-def]
    async def callback() -> None:
        event.set()

    return callback


def _recorder(errors: list[str]):  # type: ignore[no-untyped-def]
    async def callback(err: Exception) -> None:
        errors.append(str(err).lower())

    return callback


async def test_streams_stored_before_accounts_are_the_hubs_after_the_upgrade(data_dir: Path) -> None:
    """A store written when the hub was in the global account keeps its streams and messages."""
    store = await asyncio.to_thread(data_dir.resolve) / "nats"
    await asyncio.to_thread(store.mkdir, parents=True)
    port = await asyncio.to_thread(free_port)
    old = await asyncio.create_subprocess_exec(
        find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        nc = await _connect_when_up(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        await js.add_stream(name="OBSERVATIONS", subjects=["obs.>"])
        await js.publish("obs.ulsan-refining.onsan-plant.gd-101", b"reading")
        await nc.close()
    finally:
        old.terminate()
        await old.wait()
    assert (store / "jetstream" / "$G").is_dir()

    server = EmbeddedNats(data_dir)
    url = await server.start()
    try:
        hub = await nats.connect(url)
        info = await hub.jetstream().stream_info("OBSERVATIONS")
        assert info.state.messages == 1
        await hub.close()
    finally:
        await server.stop()
    assert (store / "jetstream" / "HUB").is_dir() and not (store / "jetstream" / "$G").exists()


async def _connect_when_up(url: str) -> NATS:
    for _ in range(100):
        with contextlib.suppress(nats.errors.NoServersError, OSError):
            return await nats.connect(url, allow_reconnect=False, connect_timeout=1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no server at {url}")
