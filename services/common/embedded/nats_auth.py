"""Who may connect to the embedded nats-server, in which account, with which permissions.

The server runs with a configuration file generated into its store directory (DATA/nats):

- `hub.secret` (0600): the password of the hub's own user `hub`, generated once. The hub's URL
  carries it (`nats://hub:<secret>@127.0.0.1:<port>`), so every connection of the hub, its workers
  and its tools authenticates without knowing about it.
- `users.json` (0600): the other users (the city feed's consumers), each with a bcrypt hash of its
  password, its publish / subscribe allow-lists and the hub services it imports. Revoked users stay
  listed, marked, and are left out of the configuration.
- `nats-server.conf` (0600): rendered from both at every start and on every change of the users;
  a running server is told to reload it (SIGHUP), which keeps its connections, closes those of
  users no longer in it and applies changed permissions to the others.

Accounts isolate them: the hub and every stream are in the account `HUB`; each other user is alone
in an account named like it, without JetStream, that reaches the hub only through the service
subjects the hub exports to it. A reply subject a user names is then a subject of its own account:
whatever the hub answers goes back there, never onto one of the hub's subjects.

Nothing here knows what the users are for: `services/feed/credentials.py` decides their
permissions and imports.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import msgspec
import psutil

from services.common.errors import EmbeddedServerError

from ._process import Expected, is_live, log_offset, log_since

HUB_USER = "hub"
HUB_ACCOUNT = "HUB"
SECRET_FILE = "hub.secret"
USERS_FILE = "users.json"
CONFIG_FILE = "nats-server.conf"
PID_FILE = "nats-server.pid"
_LOCK_FILE = "users.lock"
_RELOAD_DEADLINE_S = 10.0


class ServiceImport(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A subject of the hub account's that a user's account may send requests to."""

    subject: str  # in the hub's account
    # The subject the user sends to in its own account, if not the same: every account has the
    # server's own `$JS.API.>` (answering "JetStream not enabled" there), so those are renamed.
    to: str | None = None
    # "stream": a request may get many answers (a pull request's batch of messages).
    response_type: Literal["singleton", "stream"] = "singleton"


class NatsUser(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One user of the embedded server other than the hub itself, alone in its own account."""

    user: str
    password_hash: str  # bcrypt: nats-server compares it, the secret itself is never kept
    publish: list[str]
    subscribe: list[str]
    imports: list[ServiceImport] = []
    created_at: str
    created_by: str
    revoked_at: str | None = None
    revoked_by: str | None = None


def hub_secret(store: Path) -> str:
    """The hub user's password: read, or generated once (0600) the first time the server starts."""
    path = store / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)  # URL-safe: it travels inside the hub's NATS URL
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it meanwhile: theirs wins
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def load_users(store: Path) -> list[NatsUser]:
    try:
        raw = (store / USERS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    try:
        return msgspec.json.decode(raw, type=list[NatsUser])
    except msgspec.ValidationError as err:
        raise EmbeddedServerError(f"{store / USERS_FILE}: {err}") from err


def save_users(store: Path, users: Sequence[NatsUser]) -> None:
    _write_private(store / USERS_FILE, msgspec.json.format(msgspec.json.encode(list(users)), indent=2))


@contextlib.contextmanager
def users_locked(store: Path) -> Iterator[None]:
    """Serialise read-modify-write of the users between commands run at the same time."""
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(store / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def render_config(secret: str, users: Sequence[NatsUser]) -> str:
    """The `accounts` block: the hub's account with every stream, one account per active user."""
    active = [user for user in users if user.revoked_at is None]
    hub = f"  users = [\n    {{user: {_quote(HUB_USER)}, password: {_quote(secret)}}}\n  ]\n"
    return (
        "# Generated by safetyhub from hub.secret and users.json; edits are overwritten.\n"
        "accounts {\n"
        + hub_account(hub, active, indent="  ")
        + "".join(user_account(user, indent="  ") for user in active)
        + "}\n"
    )


def hub_account(users_block: str, users: Sequence[NatsUser], *, indent: str = "") -> str:
    """The hub's account: JetStream, its users, and each service exported to the users' accounts."""
    exports: dict[str, tuple[str, list[str]]] = {}
    for user in users:
        for imp in user.imports:
            response_type, accounts = exports.setdefault(imp.subject, (imp.response_type, []))
            if response_type != imp.response_type:
                raise EmbeddedServerError(
                    f"{imp.subject}: imported as {response_type} and {imp.response_type}"
                )
            accounts.append(user.user)
    lines = [f"{indent}{HUB_ACCOUNT} {{\n", f"{indent}  jetstream: enabled\n"]
    lines += [_indented(users_block, indent)]
    if exports:
        lines.append(f"{indent}  exports = [\n")
        for subject, (response_type, accounts) in exports.items():
            names = ", ".join(_quote(a) for a in accounts)
            lines.append(
                f"{indent}    {{service: {_quote(subject)}, response_type: {response_type},"
                f" accounts: [{names}]}}\n"
            )
        lines.append(f"{indent}  ]\n")
    lines.append(f"{indent}}}\n")
    return "".join(lines)


def user_account(user: NatsUser, *, indent: str = "") -> str:
    """A user's own account: the user, no JetStream, the hub's services it imports."""
    imports = "".join(
        f"{indent}    {{service: {{account: {HUB_ACCOUNT}, subject: {_quote(imp.subject)}}}"
        + (f", to: {_quote(imp.to)}" if imp.to else "")
        + "}\n"
        for imp in user.imports
    )
    return (
        f"{indent}{_quote(user.user)} {{\n"
        f"{indent}  users = [\n{user_entry(user, indent=indent + '    ')}\n{indent}  ]\n"
        f"{indent}  imports = [\n{imports}{indent}  ]\n"
        f"{indent}}}\n"
    )


def user_entry(user: NatsUser, *, indent: str = "") -> str:
    """One entry of a `users` list: the user, its bcrypt hash and its allow-lists."""

    def allow(subjects: Sequence[str]) -> str:
        inner = indent + "        "
        return "{allow: [\n" + "".join(f"{inner}{_quote(s)}\n" for s in subjects) + indent + "      ]}"

    return (
        f"{indent}{{\n"
        f"{indent}  user: {_quote(user.user)}\n"
        f"{indent}  password: {_quote(user.password_hash)}\n"
        f"{indent}  permissions: {{\n"
        f"{indent}    publish: {allow(user.publish)}\n"
        f"{indent}    subscribe: {allow(user.subscribe)}\n"
        f"{indent}  }}\n"
        f"{indent}}}"
    )


def _indented(block: str, indent: str) -> str:
    return "".join(indent + line if line.strip() else line for line in block.splitlines(keepends=True))


def write_config(store: Path) -> Path:
    """Render the configuration from the secret and the users; atomically replaced, 0600."""
    path = store / CONFIG_FILE
    _write_private(path, render_config(hub_secret(store), load_users(store)).encode())
    return path


def reload_running(store: Path) -> bool:
    """Rewrite the config and make a running embedded server reload it; False if none runs.

    Waits for the server's own word in its log that the reload succeeded (or failed), so a caller
    that returns knows the new users and permissions are in force.
    """
    write_config(store)
    pid = _running_pid(store)
    if pid is None:
        return False
    log = store.parent / "logs" / "nats-server.log"
    # Twice: nats-server 2.15 wires an account that a reload adds to the hub's exported JetStream
    # services only at the next reload (before it, the user's requests find no responders).
    return _reload_once(pid, log) and _reload_once(pid, log)


def _reload_once(pid: int, log: Path) -> bool:
    # Blocking by design: callers in the hub run reload_running in a thread (asyncio.to_thread),
    # the CLI outside any event loop.
    offset = log_offset(log)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + _RELOAD_DEADLINE_S
    while time.monotonic() < deadline:
        said = log_since(log, offset)
        if "Reloaded server configuration" in said:
            return True
        if "[ERR]" in said and "reload" in said.lower():
            raise EmbeddedServerError(f"nats-server refused the new configuration:\n{said}")
        time.sleep(0.02)
    raise EmbeddedServerError(f"nats-server did not confirm the reload within {_RELOAD_DEADLINE_S:.0f} s")


def running_port(store: Path) -> int | None:
    """The client port of the embedded server running on `store`, from its command line; or None."""
    pid = _running_pid(store)
    if pid is None:
        return None
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == "-p" and value.isdigit():
            return int(value)
    return None


def _running_pid(store: Path) -> int | None:
    try:
        text = (store / PID_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if text.isdigit() and is_live(int(text), Expected("nats-server", store)):
        return int(text)
    return None


def _quote(text: str) -> str:
    # A JSON string is a valid nats-server config string; quoting also keeps a bcrypt hash's `$`
    # from being read as a variable reference.
    return json.dumps(text)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
