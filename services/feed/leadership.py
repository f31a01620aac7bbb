"""Which of a deployment's processes runs the feed's consumers and timers: the one holding the
feed's PostgreSQL advisory lock, on a connection of its own.

Two processes pulling batches of one site from the same durables would commit them in either
order, and the relay publishes in commit order; one consuming process keeps each incident's events
in the order of its changes. The others stand by, trying the lock every `STANDBY_S`, and take over
when the holder stops or its session ends. The holder checks its session every `CHECK_S`, and
each unit of work checks the lock is still its own (`check`): a session lost has lost the lock,
another process may consume already, so the holder commits nothing more and stands down at once.

A handover keeps each incident's order: the holder standing down gives back what it was delivered
and did not commit at once (nacked, in stream order: see `DurableConsumer.stop(release=True)`)
and says so, and the one taking over starts its consumers only then (`Handover`), so JetStream
delivers it those messages before anything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.common.bus.consumer import ConsumerSpec, Released
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.feed import metrics

log = get_logger(__name__)
# The lock (a key class of its own among the advisory locks).
LOCK = (
    0x5AFE_0D,
    int.from_bytes(hashlib.blake2b(b"feed.consumers", digest_size=4).digest(), "big", signed=True),
)
# A standby tries the lock this often; the holder checks its session this often.
STANDBY_S = 1.0
CHECK_S = 1.0
# A lock session that does not answer its check within this is taken as lost.
CHECK_TIMEOUT_S = 10.0
# How long the session check and the unlock may wait on PostgreSQL, and how long `stop` waits
# for the cancelled leadership: a frozen database must not hold the hub's shutdown (the lock
# goes with the session when the pool is terminated anyway).
LEAD_GRACE_S = 0.5
# How long `start` waits for the first try at the lock, so a lone process consumes when it is up.
FIRST_TRY_S = 10.0
# How often a process taking over looks whether the one before has given its messages back.
HANDOVER_POLL_S = 0.05
_CLAIM = (
    "INSERT INTO feed_handover (holder, released) VALUES ($1, false) ON CONFLICT (id)"
    " DO UPDATE SET holder = EXCLUDED.holder, released = false, since = clock_timestamp()"
)
_GIVEN = "UPDATE feed_handover SET released = true, since = clock_timestamp() WHERE holder = $1"
# Whether the session `$3` still holds the lock (pg_locks shows the keys as oids).
_HOLDS_LOCK = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1"
    " AND objid = $2 AND objsubid = 2 AND pid = $3 AND granted)"
)
_KEY = (LOCK[0] & 0xFFFFFFFF, LOCK[1] & 0xFFFFFFFF)


class Leadership:
    """Runs `lead` while this process holds the lock and `stand_down` when it stops holding it
    (stopping, or its session lost); `stand_down` returns once nothing more will be committed."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lead: Callable[[], Awaitable[None]],
        stand_down: Callable[[], Awaitable[None]],
        stand_down_grace: float,
    ) -> None:
        self._pool = pool
        self._lead = lead
        self._stand_down = stand_down
        # How long `stop` waits for the holder to stand down before it cancels it.
        self._stop_wait = LEAD_GRACE_S + stand_down_grace
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Set by `stop`, and by a unit of work that found the lock gone: the holder's loop wakes.
        self._wake = asyncio.Event()
        self._lost = False
        self._first_try = asyncio.Event()
        self.leading = False
        self._lock_pid = 0  # the server pid of the session holding the lock while leading

    @property
    def standing_by(self) -> bool:
        """Whether this process waits to take over (the lock is another's): ready, not a fault."""
        task = self._task
        return task is not None and not task.done() and not self.leading

    async def start(self) -> None:
        metrics.LEADER.set(0)
        self._task = asyncio.create_task(self._run(), name="feed-leadership")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_try.wait(), FIRST_TRY_S)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # The holder drains its consumers before it lets the lock go (see _hold).
            _, pending = await asyncio.wait([self._task], timeout=self._stop_wait)
            for task in pending:
                task.cancel()
                await asyncio.wait([task], timeout=LEAD_GRACE_S)

    async def check(self, conn: asyncpg.Connection) -> None:
        """Raise Released (the batch goes back at once, nothing committed) unless this process's
        lock session still holds the lock; the holder then stands down without waiting for its
        next session check."""
        if self.leading and await conn.fetchval(_HOLDS_LOCK, *_KEY, self._lock_pid):
            return
        if self.leading:
            self._lost = True
            self._wake.set()
        raise Released("the feed's lock is no longer this process's")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as conn:
                    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *LOCK):
                        self._first_try.set()
                        await self._pause(STANDBY_S)
                        continue
                    await self._hold(conn)
                if self._lost:  # give a standby its turn
                    await self._pause(STANDBY_S)
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                UnavailableError,
            ) as err:
                log.warning("feed_lead_lost", error=repr(err))
                self._first_try.set()
                await self._pause(STANDBY_S)
            except Exception:  # a bug: the feed must come back, not stay off until a restart
                log.exception("feed_lead_error")
                self._first_try.set()
                await self._pause(STANDBY_S)

    async def _hold(self, conn: asyncpg.Connection) -> None:
        """Lead while `conn` holds the lock, then stand down and let it go."""
        try:
            self._lock_pid = conn.get_server_pid()
            self._lost = False
            self.leading = True
            metrics.LEADER.set(1)
            log.info("feed_leading")
            await self._lead()
            self._first_try.set()
            while not self._stopping.is_set() and not self._lost:
                await self._pause(CHECK_S)
                if not self._stopping.is_set() and not self._lost:  # a lost session has lost the lock
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
            if self._lost:
                log.warning("feed_lead_lost", error="a unit of work found the lock gone")
        finally:
            # Stood down before the lock is let go: the next holder starts after the last batch
            # of this one is committed or given back.
            await self._stand_down()
            self.leading = False
            metrics.LEADER.set(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock($1, $2)", *LOCK), LEAD_GRACE_S)
            log.info("feed_standing_down")

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if stopped or the lock found lost (`_lost` is looked at before
        each pause, with no await between, so a wake cleared here is never one unseen)."""
        if not self._stopping.is_set():
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class Handover:
    """What a leader gives back and the next one waits for: the messages the one before was
    delivered and did not commit, nacked (redelivered before anything newer) before the next one
    starts its consumers.

    The one standing down says it has given them back (`give`, after its consumers stopped with
    `release`); the one taking over (`take`) waits for that, or for the durables to hold nothing
    delivered and unacked (nothing can come back), or at most `within` (the durables' ack wait:
    a process that died without giving back had its messages redelivered by then)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: NATS,
        js: JetStreamContext,
        specs: Sequence[ConsumerSpec],
        *,
        within: float,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._js = js
        self._specs = specs
        self._within = within
        self._term = ""
        # The last term of this process whose consumers gave everything back: when the lock comes
        # back to it (its session was lost, then the database came back) there is nothing to wait
        # for even if it could not say so.
        self._given = ""

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            row = await self._pool.fetchrow("SELECT holder, released FROM feed_handover")
            if row is None or row["released"] or row["holder"] == self._given or not await self._unacked():
                break
            if loop.time() - started >= self._within:
                log.warning("feed_handover_not_given", holder=row["holder"], waited_s=self._within)
                break
            await asyncio.sleep(HANDOVER_POLL_S)
        self._term = uuid.uuid4().hex
        await self._pool.execute(_CLAIM, self._term)
        log.info("feed_handover_taken", waited_s=round(loop.time() - started, 3))

    async def give(self) -> None:
        """Say this term's messages are given back (the nacks sent first: a flush is a round
        trip). Bounded: a frozen database must not hold a shutdown; the next leader then waits."""
        self._given = self._term
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._nc.flush(), LEAD_GRACE_S)
            await asyncio.wait_for(self._pool.execute(_GIVEN, self._term), LEAD_GRACE_S)

    async def _unacked(self) -> bool:
        for spec in self._specs:
            try:
                info = await self._js.consumer_info(spec.stream, spec.durable)
            except NotFoundError:
                continue  # never created: nothing delivered
            if info.num_ack_pending:
                return True
        return False
