"""One worker process of `safetyhub up --workers N`: every service, on the shared HTTP port.

The supervisor starts it with the servers' URLs in SAFETYHUB_NATS_URL / SAFETYHUB_DATABASE_URL.
It prints one line on stdout once it serves, and stops when told (SIGTERM) or when its supervisor
is gone, so a killed supervisor never leaves workers behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from services.common.logging import configure_logging
from services.hub.bootstrap import Endpoints, Hub
from services.hub.cli import install_stop_signals, run_async
from services.hub.registry import REGISTRY

READY_LINE = "safetyhub-worker-ready"


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    # Linux offers no event for "my parent died" that survives exec; polling the parent pid is
    # the portable way (a re-parented process sees another ppid).
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    stop.set()


async def _serve(args: argparse.Namespace) -> int:
    config, base = REGISTRY.load_config(args.config)
    config = msgspec.structs.replace(config, http=msgspec.structs.replace(config.http, port=args.http_port))
    configure_logging(config.log_level)
    if config.bus.url is None or config.database.url is None:
        print("worker: SAFETYHUB_NATS_URL and SAFETYHUB_DATABASE_URL must be set", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    install_stop_signals(stop)
    watcher = asyncio.create_task(_watch_parent(os.getppid(), stop))
    hub = Hub(
        config, base, Endpoints(config.bus.url, config.database.url), reuse_port=True, config_file=args.config
    )
    try:
        await hub.start()
        print(READY_LINE, flush=True)
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await hub.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="safetyhub-worker")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, help="the supervisor's data dir (names the worker in ps)")
    return run_async(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
