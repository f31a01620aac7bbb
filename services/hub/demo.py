"""`safetyhub demo`: the hub with its embedded servers, a simulated Ulsan plant and a live view.

A newcomer sees data flow at once: the simulator posts every device's readings each second through
the real ingest API (with one gateway key per tenant), and every few minutes a gas release, a pump
vibration or a detector fault. A simulated responder (services/simulator/responder.py) works the
first tenant's incidents through the incident API with a person's token signed by the hub's own
key: it acknowledges, goes on scene and resolves once the alarms have returned. Keys are made on
first run and kept in the data dir, so a second demo on the same data dir reuses them. The FCC 2
camera is a simulated IP camera the demo serves (demo_camera.py), watched by the video service:
its smoke is seen in its pictures of the gas release. Logs go to
`<data dir>/logs/hub.log` while the live view owns the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from services.common.audit import Actor, record, transaction
from services.common.auth.hub_key import hub_key, issue_token
from services.common.auth.keys import create_key
from services.common.auth.verifier import KeyVerifier
from services.common.logging import configure_logging, get_logger
from services.common.redact import redact
from services.common.settings import HubConfig
from services.common.sites.registry import SiteRegistry
from services.feed.app import FEED
from services.feed.config import SitePolicy
from services.feed.domain.policy import Level
from services.hub.bootstrap import Endpoints, Hub, load_sites
from services.hub.demo_camera import camera_stream, demo_camera, gas_level, with_demo_camera
from services.hub.demo_control_room import control_room
from services.hub.incident_view import IncidentFeed
from services.hub.runtime import hub_endpoints, write_runtime_file
from services.simulator.plant import PlantSimulator
from services.simulator.poster import PosterStats, run_simulator
from services.simulator.responder import run_responder

log = get_logger(__name__)
KEYS_FILE = "demo-keys.json"
CONTROL_ROOM_FILE = "demo-control-room.json"
# The simulated field responder: a person's token subject, as the incidents' owner shows it.
RESPONDER = "demo-responder"
RESPONDER_TTL_S = 8 * 3600.0


async def _responder_token(hub: Hub, tenant: str) -> str:
    """A person's token for the simulated responder, signed with the hub's own key (as `safetyhub
    tokens issue` signs one), its issue in the audit trail."""
    async with transaction(hub.pool) as tx:
        key = await hub_key(tx)
        token = issue_token(
            key,
            subject=RESPONDER,
            tenant=tenant,
            roles=["responder"],
            name="Simulated responder",
            ttl_s=RESPONDER_TTL_S,
        )
        detail = {"roles": ["responder"], "sites": None, "ttl_s": RESPONDER_TTL_S, "kid": key.kid}
        entry = Actor.command().entry("token.issued", tenant=tenant, target=RESPONDER, detail=detail)
        await record(tx, entry)
    return token


async def _demo_keys(hub: Hub, registry: SiteRegistry, data_dir: Path) -> dict[str, str]:
    """One gateway key per tenant with sites, and a viewer key of the first; reused across runs."""
    path = data_dir / KEYS_FILE
    verifier = KeyVerifier(hub.pool)
    keys: dict[str, str] = {}
    if path.exists():
        stored = json.loads(await asyncio.to_thread(path.read_text))
        for name, key in stored.items():
            if await verifier.verify(key) is not None:
                keys[name] = key
    tenants = list(dict.fromkeys(site.tenant for site in registry.sites))  # in file order
    for tenant in tenants:
        if f"gateway:{tenant}" not in keys:
            keys[f"gateway:{tenant}"] = await create_key(
                hub.pool, tenant=tenant, role="gateway", description="demo simulator"
            )
    if tenants and f"admin:{tenants[0]}" not in keys:
        keys[f"admin:{tenants[0]}"] = await create_key(
            hub.pool, tenant=tenants[0], role="admin", description="demo control room"
        )
    if tenants and f"viewer:{tenants[0]}" not in keys:
        keys[f"viewer:{tenants[0]}"] = await create_key(
            hub.pool, tenant=tenants[0], role="viewer", description="demo viewer"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=2)
    return keys


@contextlib.asynccontextmanager
async def _control_room(hub: Hub, data_dir: Path, keys: dict[str, str]) -> AsyncIterator[None]:
    """The first tenant's incidents notified to a receiver the demo runs (demo_control_room.py);
    its endpoint and policy kept in the data dir for the next run."""
    admin = next((v for k, v in keys.items() if k.startswith("admin:")), None)
    if admin is None:
        yield
        return
    path = data_dir / CONTROL_ROOM_FILE
    stored: dict[str, str] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            stored = dict(json.loads(await asyncio.to_thread(path.read_text)))
    async with control_room(hub.http_url, admin, stored):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(stored, out, indent=2)
        yield


def post_example(http_url: str, key: str, registry: SiteRegistry, tenant: str) -> str | None:
    """A ready-to-paste curl command posting one valid reading of the tenant's first device
    (None when its sites have no device).

    Without `time`: the hub stamps the moment it receives it, so the command works whenever it is
    pasted (a fixed time would age out of the history kept).
    """
    first = next(((site, dev) for site in registry.sites_of(tenant) for dev in site.devices), None)
    if first is None:
        return None
    site, device = first
    measure = device.measures[0]
    low, high = measure.range if measure.range is not None else (0.0, 100.0)
    reading = {
        "site": site.id,
        "device": device.id,
        "kind": measure.kind,
        "value": round(low + (high - low) * 0.05, 2),  # a quiet reading: no alarm in later releases
        "unit": measure.unit,
    }
    return shlex.join(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {key}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(reading, separators=(",", ":")),
            f"{http_url}/v1/observations",
        ]
    )


def _info(
    hub: Hub, data_dir: Path, endpoints: Endpoints, registry: SiteRegistry, keys: dict[str, str]
) -> dict[str, str]:
    """What the demo shows a newcomer: where things are, a key of each kind, a read, the active
    alarms and a post."""
    viewer_tenant, viewer = next((k.split(":", 1)[1], v) for k, v in keys.items() if k.startswith("viewer:"))
    gateway = keys[f"gateway:{viewer_tenant}"]
    post = post_example(hub.http_url, gateway, registry, viewer_tenant)
    return {
        "HTTP API": hub.http_url,
        "API docs": f"{hub.http_url}/docs",
        "NATS": redact(endpoints.nats_url),
        "PostgreSQL": redact(endpoints.database_url),
        "Data dir": str(data_dir),
        f"Viewer key ({viewer_tenant})": viewer,
        f"Gateway key ({viewer_tenant})": gateway,
        "Read": f"curl -H 'Authorization: Bearer {viewer}' '{hub.http_url}/v1/observations?limit=5'",
        "Alarms": f"curl -H 'Authorization: Bearer {viewer}' '{hub.http_url}/v1/alarms?state=active'",
        **({"Post": post} if post is not None else {}),
        "Logs": str(data_dir / "logs" / "hub.log"),
    }


def with_demo_sharing(config: HubConfig, registry: SiteRegistry) -> HubConfig:
    """The demo shows the city feed at work: without sharing policies in the config, every plant
    of the demo shares `redacted` (what a plant would consent to first)."""
    section = FEED.section(config)
    if section.policies:
        return config
    policies = [
        SitePolicy(tenant=site.tenant, site=site.id, level=Level.REDACTED)
        for site in registry.sites
        if site.kind == "plant"
    ]
    return msgspec.structs.replace(config, feed=msgspec.structs.replace(section, policies=policies))


def with_demo_public_url(config: HubConfig) -> HubConfig:
    """The demo's notifications carry acknowledgement links: without `http.public_url`, the hub's
    own address on this machine (its configured port; a port picked at start has no address yet)."""
    http = config.http
    if http.public_url or http.port == 0:
        return config
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    host = f"[{host}]" if ":" in host else host
    public = msgspec.structs.replace(http, public_url=f"http://{host}:{http.port}")
    return msgspec.structs.replace(config, http=public)


async def run_demo(config: HubConfig, base: Path, data_dir: Path, *, live: bool = True) -> int:
    from services.hub.cli import install_stop_signals

    log_file = None
    if live:
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        log_file = (data_dir / "logs" / "hub.log").open("a", encoding="utf-8")
        configure_logging(config.log_level, stream=log_file)
    else:
        configure_logging(config.log_level)
    try:
        sites = await load_sites(config, base)
        registry = sites.registry
        config = with_demo_public_url(with_demo_sharing(config, registry))
        camera = demo_camera(config, registry)
        filmed = [(camera.site, camera.device)] if camera is not None else []
        simulator = PlantSimulator(registry, filmed=filmed)
        stop = asyncio.Event()
        install_stop_signals(stop)
        async with contextlib.AsyncExitStack() as stack:
            stream = None
            if camera is not None:
                # Streaming before the hub starts, so the video service finds it at once.
                stream = await stack.enter_async_context(camera_stream(camera, gas_level(simulator, camera)))
                config = with_demo_camera(config, camera, stream)
            endpoints = await stack.enter_async_context(hub_endpoints(data_dir, config))
            hub = Hub(config, base, endpoints, sites=sites)
            try:
                await hub.start()
                write_runtime_file(data_dir, http_url=hub.http_url, endpoints=endpoints)
                keys = await _demo_keys(hub, registry, data_dir)
                info = _info(hub, data_dir, endpoints, registry, keys)
                if stream is not None:
                    info = {**info, "Camera": stream}
                async with _control_room(hub, data_dir, keys):
                    await _run(hub, registry, keys, info, stop, simulator=simulator, live=live)
            finally:
                await hub.stop()
    finally:
        if log_file is not None:
            log_file.close()
    return 0


async def _run(
    hub: Hub,
    registry: SiteRegistry,
    keys: dict[str, str],
    info: dict[str, str],
    stop: asyncio.Event,
    *,
    simulator: PlantSimulator,
    live: bool,
) -> None:
    gateway_keys = {name.split(":", 1)[1]: key for name, key in keys.items() if name.startswith("gateway:")}
    viewer_tenant, viewer = next((k.split(":", 1)[1], v) for k, v in keys.items() if k.startswith("viewer:"))
    stats = PosterStats()
    tasks = [
        asyncio.create_task(
            run_simulator(hub.http_url, gateway_keys, simulator, registry, stop, stats=stats),
            name="simulator",
        )
    ]
    if hub.config.auth.jwt.hub_tokens:
        token = functools.partial(_responder_token, hub, viewer_tenant)
        tasks.append(
            asyncio.create_task(run_responder(hub.http_url, token, RESPONDER, stop), name="responder")
        )
    else:
        log.info("demo_responder_off", reason="auth.jwt.hub_tokens is off: no token to sign in with")
    if live:
        from services.hub.camera_view import CameraFeed
        from services.hub.dashboard import run_dashboard
        from services.video.app import VIDEO

        feed = IncidentFeed(hub.http_url, viewer)
        names = [camera.name for camera in VIDEO.section(hub.config).cameras]
        cameras = CameraFeed(hub.http_url, viewer, names) if names else None
        tasks.append(
            asyncio.create_task(
                run_dashboard(info, stop, incidents=feed.fetch, cameras=cameras), name="dashboard"
            )
        )
    else:
        log.info("demo_ready", **{k.lower().replace(" ", "_"): v for k, v in info.items()})
    await stop.wait()
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
