"""/readyz's probe: concurrent checks, answered at the bound, one run per check at a time."""

from __future__ import annotations

import asyncio

from services.common.http.ops import Readiness


class Stuck:
    """A check that hangs until released, as one against a frozen server does."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> str | None:
        self.runs += 1
        await self.release.wait()
        return None


async def fine() -> str | None:
    return None


async def broken() -> str | None:
    raise ConnectionRefusedError("refused")


async def test_a_hanging_check_is_reported_at_the_bound_and_the_others_still_answer() -> None:
    stuck = Stuck()
    readiness = Readiness({"nats": stuck, "postgres": fine, "other": broken}, bound=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()

    results = await readiness.probe()

    assert loop.time() - started < 1.0
    assert results == {
        "nats": "no answer within 0.2 s",
        "postgres": "ok",
        "other": "ConnectionRefusedError: refused",
    }
    await readiness.close()


async def test_a_probe_waits_for_the_run_in_progress_instead_of_starting_another() -> None:
    stuck = Stuck()
    readiness = Readiness({"nats": stuck}, bound=0.05)

    assert (await readiness.probe())["nats"].startswith("no answer")
    assert (await readiness.probe())["nats"].startswith("no answer")
    assert stuck.runs == 1

    stuck.release.set()
    assert await readiness.probe() == {"nats": "ok"}
    assert await readiness.probe() == {"nats": "ok"}
    assert stuck.runs == 2  # the finished run was reported once, then a new one started
    await readiness.close()


async def test_close_stops_the_runs_left_behind() -> None:
    stuck = Stuck()
    readiness = Readiness({"nats": stuck}, bound=0.05)
    await readiness.probe()
    left = [t for t in asyncio.all_tasks() if t.get_name() == "readyz-nats"]
    assert len(left) == 1 and not left[0].done()

    await readiness.close()

    assert left[0].cancelled()
