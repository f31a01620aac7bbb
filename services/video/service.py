"""The video service in a process: camera workers, and the writer that commits what they find.

Each firing is committed in one unit of work: its snapshots (`video_snapshots`) and its
observation in the outbox, which the service's relay publishes to OBSERVATIONS. A firing is
therefore on the bus exactly when its snapshot can be read, and a crash after the commit loses
nothing. While PostgreSQL is away the writer retries with a growing delay, the queue fills, and
the workers wait, dropping frames, never detections.

The `video:` section is reloaded when the config file changes (reload.py): cameras added, removed
or changed are started, stopped or restarted, the others run on untouched.

Cameras run in one process of a deployment at a time: the one holding the service's PostgreSQL
advisory lock (as the outbox relays do). Others (`up --workers N`, more replicas) stand by and take
over when the holder stops or its connection dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from ulid import ULID

from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.errors import UnavailableError
from services.common.kernel import ServiceContext
from services.common.logging import get_logger
from services.common.outbox import Outbox, OutboxRelay
from services.common.outbox.unit_of_work import OutboxError, UnitOfWork
from services.common.sites.registry import SiteRegistry
from services.video import metrics
from services.video.adapters import snapshots
from services.video.adapters.messages import blurred_message, encode, firing_observation, health_observation
from services.video.config import CameraConfig, VideoConfig
from services.video.reload import VideoConfigReloader
from services.video.worker import AnyEvent, CameraHealth, CameraWorker, HealthEvent

log = get_logger(__name__)

SERVICE = "video"
_LOCK = (
    0x5AFE_0C,
    int.from_bytes(hashlib.blake2b(b"video.cameras", digest_size=4).digest(), "big", signed=True),
)
_STANDBY_S = 2.0
_CHECK_S = 5.0
_STOP_GRACE_S = 5.0
_PURGE_EVERY_S = 3600.0


class VideoService:
    def __init__(self, context: ServiceContext, config: VideoConfig) -> None:
        self._pool = context.pool
        self._sites: Callable[[], SiteRegistry] = context.sites
        self._config = config
        self._outbox = Outbox(context.pool, SERVICE)
        self._publisher = JetStreamPublisher(context.nc)
        self._relay = OutboxRelay(context.pool, self._publisher, SERVICE)
        self._health = {camera.name: CameraHealth(camera.name) for camera in config.cameras}
        self._workers: dict[str, CameraWorker] = {}
        # Starting and stopping workers: by leadership and by reloads, one at a time.
        self._changing = asyncio.Lock()
        self._queue: asyncio.Queue[AnyEvent] = asyncio.Queue(maxsize=config.max_pending)
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloader: VideoConfigReloader | None = None
        if context.config_file is not None and config.reload_s > 0:
            schema = type(context.config)  # the hub's composed config: the file is checked whole
            self._reloader = VideoConfigReloader(
                context.config_file, schema, self.apply, interval=config.reload_s
            )
        self.leading = False

    @property
    def active(self) -> bool:
        """Whether the service runs: it has cameras, or may get some by a reload."""
        return bool(self._config.cameras) or self._reloader is not None

    async def start(self) -> None:
        if self._config.cameras:
            await self._run_cameras()
        if self._reloader is not None:
            await self._reloader.start()

    async def _run_cameras(self) -> None:
        """Start the relay, the writer and the bid for the cameras' lock: at start-up, or when a
        reload gives a hub without cameras its first (until then it holds no connection)."""
        await self._publisher.start()
        self._relay.start()
        self._loop = loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._lead(loop), name="video-lead"),
            asyncio.create_task(self._write(), name="video-writer"),
        ]

    async def stop(self) -> None:
        if not self.active or self._stopped.is_set():
            return
        self._stopped.set()
        if self._reloader is not None:
            await self._reloader.stop()
        if not self._tasks:
            return
        async with self._changing:
            await self._stop_workers(list(self._workers))
        # What the workers handed over is committed, within a bound: it was never acknowledged to
        # anyone, so what is left after it is lost with the process, as an unread frame would be.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), _STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._relay.stop()
        await self._publisher.close()

    async def readiness(self) -> str | None:
        """None while every camera delivers frames (or this process stands by), else which do not."""
        if not self.leading:
            return None
        problems = [f"{name}: {h.problem}" for name, h in self._health.items() if h.problem is not None]
        return "; ".join(problems) or None

    # -- leadership: the cameras run where the lock is held

    async def _lead(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stopped.is_set():
            try:
                async with self._pool.acquire() as conn:
                    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_LOCK):
                        await self._pause(_STANDBY_S)
                        continue
                    async with self._changing:
                        self.leading = True
                        log.info("video_cameras_leading", cameras=len(self._config.cameras))
                        self._start_workers(loop, [camera.name for camera in self._config.cameras])
                    try:
                        purged_at = -_PURGE_EVERY_S
                        while not self._stopped.is_set():
                            if loop.time() - purged_at >= _PURGE_EVERY_S:
                                purged_at = loop.time()
                                purged = await snapshots.purge(conn, self._config.snapshot_retention_days)
                                log.info("video_snapshots_purged", count=purged)
                            await self._pause(_CHECK_S)
                            await conn.fetchval("SELECT 1")  # a lost connection has lost the lock
                    finally:
                        async with self._changing:
                            self.leading = False
                            await self._stop_workers(list(self._workers))
                        with contextlib.suppress(Exception):
                            await conn.execute("SELECT pg_advisory_unlock($1, $2)", *_LOCK)
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                UnavailableError,
            ) as err:
                log.warning("video_lead_lost", error=repr(err))
                await self._pause(_STANDBY_S)
            except Exception:  # a bug: the cameras must come back, not stay off until a restart
                log.exception("video_lead_error")
                await self._pause(_STANDBY_S)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def apply(self, config: VideoConfig) -> None:
        """Put a reloaded `video:` section in use: start the cameras added, stop those removed,
        restart those changed (all of them when a setting of the section changed)."""
        async with self._changing:
            old, self._config = self._config, config
            before = {camera.name: camera for camera in old.cameras}
            after = {camera.name: camera for camera in config.cameras}
            settings_changed = msgspec.structs.replace(old, cameras=[]) != msgspec.structs.replace(
                config, cameras=[]
            )
            removed = sorted(set(before) - set(after))
            added = sorted(set(after) - set(before))
            changed = sorted(n for n in after if n in before and (settings_changed or after[n] != before[n]))
            if not (removed or added or changed):
                return
            await self._stop_workers([n for n in (*removed, *changed) if n in self._workers])
            for name in removed:
                del self._health[name]
                with contextlib.suppress(KeyError):  # never reported up or down
                    metrics.CAMERA_UP.remove(name)
            for name in (*added, *changed):
                self._health[name] = CameraHealth(name)
            if self.leading and self._loop is not None:
                self._start_workers(self._loop, [*added, *changed])
            log.info("video_config_reloaded", added=added, removed=removed, changed=changed)
        if not self._tasks and config.cameras and not self._stopped.is_set():
            await self._run_cameras()  # the lead loop starts every camera once it holds the lock

    def _start_workers(self, loop: asyncio.AbstractEventLoop, names: list[str]) -> None:
        registry = self._sites()
        for camera in self._config.cameras:
            if camera.name not in names:
                continue
            health = self._health[camera.name]
            problem = _not_a_camera(registry, camera)
            if problem is not None:
                health.down(problem)
                log.error("camera_refused", site=camera.site, device=camera.device, reason=problem)
                continue
            tenant = registry.tenant_of(camera.site) or ""
            site = registry.site(camera.site)
            timezone = ZoneInfo(site.timezone) if site is not None else UTC
            worker = CameraWorker(
                camera, tenant, self._config, self._deliverer(loop), health=health, timezone=timezone
            )
            worker.start()
            self._workers[camera.name] = worker

    async def _stop_workers(self, names: list[str]) -> None:
        workers = [self._workers.pop(name) for name in names if name in self._workers]
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            if not await asyncio.to_thread(worker.join, _STOP_GRACE_S):
                log.warning("camera_worker_not_stopped", camera=worker.health.name, bound_s=_STOP_GRACE_S)

    def _deliverer(self, loop: asyncio.AbstractEventLoop) -> Callable[[AnyEvent], None]:
        queue = self._queue

        def deliver(event: AnyEvent) -> None:
            # Called from a worker thread: waits while the queue is full (back-pressure).
            future = asyncio.run_coroutine_threadsafe(queue.put(event), loop)
            while True:
                try:
                    future.result(timeout=0.5)
                    return
                except TimeoutError:
                    if self._stopped.is_set():
                        future.cancel()
                        return

        return deliver

    # -- the writer: snapshots and observation in one unit of work

    async def _write(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._commit(event)
            except Exception:  # one event that cannot be encoded must not stop the writer
                metrics.PUBLISH_FAILURES.labels("error").inc()
                log.exception("video_event_not_stored", site=event.camera.site, device=event.camera.device)
            finally:
                self._queue.task_done()

    async def _commit(self, event: AnyEvent) -> None:
        camera, received = event.camera, datetime.now(UTC)
        if isinstance(event, HealthEvent):
            item = health_observation(
                event.condition, site=camera.site, device=camera.device, taken=event.taken
            )
            observation_id, message = encode(item, tenant=event.tenant, received=received)
            bound = log.bind(
                site=camera.site,
                device=camera.device,
                condition=event.condition.value,
                correlation_id=observation_id,
            )
            if await self._store(message, None, bound, observation_id):
                metrics.DETECTIONS.labels("camera_health").inc()
                bound.info("video_camera_health", observation_id=observation_id)
            return
        firing = event.firing
        ref = str(ULID())
        item = firing_observation(
            firing,
            site=camera.site,
            device=camera.device,
            taken=event.taken,
            frame=event.frame_size,
            snapshot=ref,
        )
        observation_id, message = encode(item, tenant=event.tenant, received=received)
        snapshot = snapshots.Snapshot(
            ref, event.tenant, camera.site, camera.device, event.taken, event.jpeg, event.blurred, event.faces
        )
        bound = log.bind(
            site=camera.site,
            device=camera.device,
            rule=firing.rule.value,
            zone=firing.zone,
            track_id=firing.track_id,
            correlation_id=observation_id,
        )
        if await self._store(message, snapshot, bound, observation_id):
            metrics.DETECTIONS.labels(firing.rule.value).inc()
            bound.info(
                "video_detection",
                observation_id=observation_id,
                snapshot=ref,
                confidence=round(firing.confidence, 3),
                faces_blurred=event.faces,
            )

    async def _store(
        self, message: OutgoingMessage, snapshot: snapshots.Snapshot | None, bound: Any, observation_id: str
    ) -> bool:
        """Commit the snapshot (if any) and queue the message in one unit of work; retried while
        PostgreSQL is away. False when it could not be stored (logged and counted)."""
        failures = 0
        while True:
            try:
                async with self._outbox.unit_of_work() as uow:
                    if snapshot is not None:
                        await snapshots.insert(uow.connection, snapshot)
                        self._emit_blurred(uow, snapshot, bound)
                    uow.emit(message)
            except UnavailableError as err:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                metrics.PUBLISH_FAILURES.labels("database").inc()
                bound.warning("video_detection_retry", error=str(err), retry_in_s=delay)
                if self._stopped.is_set() and failures > 3:
                    bound.error("video_detection_lost_at_stop", observation_id=observation_id)
                    return False
                await asyncio.sleep(delay)
                continue
            except Exception:
                metrics.PUBLISH_FAILURES.labels("error").inc()
                bound.exception("video_detection_not_stored", observation_id=observation_id)
                return False
            return True

    @staticmethod
    def _emit_blurred(uow: UnitOfWork, snapshot: snapshots.Snapshot, bound: Any) -> None:
        """Queue the blurred copy for the feed, before the observation: on the bus it is there
        before any alarm or incident naming it. One past the server's max_payload cannot travel:
        the detection still goes, without a picture for the city (logged)."""
        try:
            uow.emit(blurred_message(snapshot))
        except OutboxError as err:
            metrics.PUBLISH_FAILURES.labels("blurred_too_large").inc()
            bound.warning("video_blurred_not_shared", snapshot=snapshot.ref, error=str(err))


def _not_a_camera(registry: SiteRegistry, camera: CameraConfig) -> str | None:
    """Why the site files do not allow this camera, or None."""
    if registry.site(camera.site) is None:
        return f"site {camera.site!r} is not in the site files"
    device = registry.device(camera.site, camera.device)
    if device is None:
        return f"device {camera.device!r} is not a device of site {camera.site!r} in the site files"
    if device.type != "camera":
        return f"device {camera.device!r} of site {camera.site!r} is a {device.type}, not a camera"
    return None
