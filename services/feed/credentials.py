"""The city platform's NATS credentials: a user that may read the `FEED` stream and nothing else.

A city user reads through its own durable pull consumer, named like the user, and gets JetStream's
answers and messages on its own inbox prefix (`_INBOX_<name>.>`), never the shared `_INBOX.>`:
with `_INBOX.>` it could subscribe to every other connection's replies, the hub's pull consumers'
deliveries included. What it may publish:

- create, read, delete its durable consumer on FEED (delete lets it start a replay afresh);
- ask that consumer for the next messages and acknowledge them;
- read FEED's stream info (first and last sequence, to choose where to replay from).

Nothing else: no publish on `feed.>` or any subject, no subscription outside its inbox, no other
stream's or consumer's API (an ephemeral consumer on FEED included), no account info.

The secret is a random 256-bit token, shown once; only its bcrypt hash is kept (nats-server checks
bcrypt hashes itself). The users live with the embedded server (`nats_auth`); for an external
server, `user_entry` gives the block an operator pastes into its configuration.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import bcrypt
import msgspec

from services.common.embedded.nats_auth import (
    HUB_USER,
    NatsUser,
    load_users,
    reload_running,
    save_users,
    users_locked,
)
from services.common.errors import SafetyhubError

STREAM = "FEED"
# Lower-case letters, digits and dashes: valid as a NATS user, a consumer name and a subject token.
_NAME = re.compile(r"[a-z][a-z0-9-]{1,62}[a-z0-9]")
_BCRYPT_COST = 11  # the secret is random, so the cost only guards a leaked hash; ~0.1 s per login


class FeedCredentialsError(SafetyhubError):
    """A credential cannot be created or revoked as asked."""


def check_name(name: str) -> str:
    """The name, or FeedCredentialsError saying what a name may be."""
    if not _NAME.fullmatch(name):
        raise FeedCredentialsError(
            f"--name: {name!r} is not a valid name: 3 to 64 lower-case letters, digits and dashes,"
            " starting with a letter and not ending with a dash (e.g. city-ulsan)"
        )
    if name == HUB_USER:
        raise FeedCredentialsError(f"--name: {name!r} is the hub's own user")
    return name


def inbox_prefix(name: str) -> str:
    return f"_INBOX_{name}"


def publish_allow(name: str) -> list[str]:
    consumer = f"{STREAM}.{name}"
    return [
        # Create (or update) its durable consumer: the current API puts the filter subject after
        # the consumer name; older clients use the name alone or DURABLE.CREATE.
        f"$JS.API.CONSUMER.CREATE.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{consumer}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{consumer}",
        f"$JS.API.CONSUMER.INFO.{consumer}",
        f"$JS.API.CONSUMER.DELETE.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{consumer}",
        f"$JS.API.STREAM.INFO.{STREAM}",
        f"$JS.ACK.{consumer}.>",
    ]


def subscribe_allow(name: str) -> list[str]:
    return [f"{inbox_prefix(name)}.>"]


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What the city is told once: the secret exists nowhere else afterwards."""

    user: NatsUser
    secret: str

    @property
    def name(self) -> str:
        return self.user.user


def new_credential(name: str, *, now: datetime, by: str) -> NewCredential:
    check_name(name)
    secret = secrets.token_urlsafe(32)  # URL-safe, so it may travel inside a nats:// URL
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(_BCRYPT_COST)).decode()
    user = NatsUser(
        user=name,
        password_hash=hashed,
        publish=publish_allow(name),
        subscribe=subscribe_allow(name),
        created_at=now.isoformat(),
        created_by=by,
    )
    return NewCredential(user, secret)


def is_feed_user(user: NatsUser) -> bool:
    return user.subscribe == subscribe_allow(user.user)


def feed_users(store: Path, *, include_revoked: bool) -> list[NatsUser]:
    return [
        user
        for user in load_users(store)
        if is_feed_user(user) and (include_revoked or user.revoked_at is None)
    ]


def add(store: Path, credential: NewCredential) -> bool:
    """Record the user and reload a running embedded server; True if one was reloaded.

    A name in use by an active user is refused (revoke it first); a revoked one is replaced.
    """
    with users_locked(store):
        users = load_users(store)
        if any(u.user == credential.name and u.revoked_at is None for u in users):
            raise FeedCredentialsError(
                f"--name: {credential.name!r} already has credentials; revoke them first to issue new ones"
            )
        save_users(store, [u for u in users if u.user != credential.name] + [credential.user])
        return reload_running(store)


def revoke(store: Path, name: str, *, now: datetime, by: str) -> bool:
    """Mark the user revoked and reload a running server (which closes its connections)."""
    with users_locked(store):
        users = load_users(store)
        active = [u for u in users if u.user == name and u.revoked_at is None and is_feed_user(u)]
        if not active:
            raise FeedCredentialsError(f"no active feed credentials named {name!r}")
        revoked = [_revoked(u, now, by) if u.user == name and u.revoked_at is None else u for u in users]
        save_users(store, revoked)
        return reload_running(store)


def _revoked(user: NatsUser, now: datetime, by: str) -> NatsUser:
    return msgspec.structs.replace(user, revoked_at=now.isoformat(), revoked_by=by)


def format_users(users: Sequence[NatsUser]) -> str:
    """Aligned columns, one user a line; never a secret (only hashes exist)."""
    if not users:
        return "no feed credentials"
    header = ("NAME", "DURABLE", "INBOX PREFIX", "CREATED", "BY", "REVOKED")
    rows = [header] + [
        (u.user, u.user, inbox_prefix(u.user), u.created_at, u.created_by, u.revoked_at or "-") for u in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
