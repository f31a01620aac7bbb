"""The `safetyhub` command: up, demo, run, migrate, keys."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec

from services.common.errors import ConfigError, SafetyhubError
from services.common.logging import configure_logging
from services.common.settings import HubConfig, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safetyhub", description="Safety incident and alarm hub")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
        p.add_argument("--config", type=Path, help="hub config file (YAML); defaults built in")
        if data_dir:
            p.add_argument(
                "--data-dir", type=Path, help="data directory (default $SAFETYHUB_DATA_DIR or ./.safetyhub)"
            )

    up = sub.add_parser("up", help="run every service in one process with embedded NATS and PostgreSQL")
    common(up)
    up.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 picks a free one)")
    up.add_argument("--workers", type=int, help="worker processes sharing the HTTP port (default 1)")

    demo = sub.add_parser("demo", help="`up` plus a simulated Ulsan plant and a live terminal view")
    common(demo)
    demo.add_argument("--http-port", type=int)
    demo.add_argument("--plain", action="store_true", help="no live view: log JSON to stderr instead")

    run = sub.add_parser("run", help="run one service against external NATS and PostgreSQL")
    run.add_argument("service", choices=["ingest", "store"])
    common(run, data_dir=False)
    run.add_argument("--http-port", type=int)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    common(migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; it is printed once and only its hash is kept")
    common(create)
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--role", required=True, choices=["gateway", "viewer", "responder", "operator", "admin", "platform"]
    )
    create.add_argument(
        "--sites", help="comma-separated sites the key is limited to (default: all of the tenant)"
    )
    create.add_argument(
        "--devices",
        help="comma-separated device ids a gateway key may post for: a device's own key"
        " (default: every device of its sites)",
    )
    create.add_argument("--description", default="")
    return parser


def _config(args: argparse.Namespace) -> tuple[HubConfig, Path]:
    config, base = load_config(args.config)
    port = getattr(args, "http_port", None)
    if port is not None:
        config = msgspec.structs.replace(config, http=msgspec.structs.replace(config.http, port=port))
    workers = getattr(args, "workers", None)
    if workers is not None:
        if not 1 <= workers <= 64:
            raise ConfigError("command line", None, "--workers", "must be between 1 and 64")
        config = msgspec.structs.replace(config, workers=workers)
    return config, base


def _data_dir(args: argparse.Namespace) -> Path:
    from services.common.embedded.datadir import default_data_dir

    chosen: Path | None = getattr(args, "data_dir", None)
    return (chosen or default_data_dir()).resolve()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _up(args: argparse.Namespace) -> int:
    from services.hub.commands import serve

    config, base = _config(args)
    configure_logging(config.log_level)
    return await serve(config, base, _data_dir(args), config_path=args.config)


async def _demo(args: argparse.Namespace) -> int:
    from services.hub.demo import run_demo

    config, base = _config(args)
    return await run_demo(config, base, _data_dir(args), live=not args.plain)


async def _run(args: argparse.Namespace) -> int:
    from services.hub.commands import run_service

    config, base = _config(args)
    configure_logging(config.log_level)
    return await run_service(config, base, args.service)


async def _migrate(args: argparse.Namespace) -> int:
    from services.hub.commands import migrate

    config, _ = _config(args)
    configure_logging(config.log_level)
    return await migrate(config, _data_dir(args))


def _list(option: str | None) -> list[str] | None:
    # An option given but empty is an empty list (refused), never "no limit".
    return None if option is None else [part.strip() for part in option.split(",") if part.strip()]


async def _keys_create(args: argparse.Namespace) -> int:
    from services.hub.commands import create_key

    config, _ = _config(args)
    configure_logging("warning")
    key = await create_key(
        config,
        _data_dir(args),
        tenant=args.tenant,
        role=args.role,
        sites=_list(args.sites),
        devices=_list(args.devices),
        description=args.description,
    )
    print(key)
    return 0


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"up": _up, "demo": _demo, "run": _run, "migrate": _migrate, "keys": _keys_create}
    try:
        return run_async(handlers[args.command](args))
    except ConfigError as err:
        print(f"safetyhub: configuration error: {err}", file=sys.stderr)
        return 2
    except SafetyhubError as err:
        print(f"safetyhub: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
