"""The city platform's NATS credentials: a user that may read the `FEED` stream and nothing else.

Each city user is alone in a NATS account of its own, without JetStream; the hub's streams are in
the hub's account, which exports to it exactly the services reading FEED needs:

- the next messages of its durable pull consumer on FEED (named like the user) and their
  acknowledgements;
- that consumer's info, and resetting it to a stream sequence (a replay);
- FEED's stream info (first and last sequence) and its messages by sequence or time (to find the
  sequence a replay from a time starts at);
- a message of FEED_SNAPSHOTS by subject: the blurred picture a shared event names (its
  `snapshot` or `snapshots`). The hub's SNAPSHOTS stream and the original pictures are not
  imported, so they are out of the city's reach.

The city cannot create, change or delete consumers: the hub creates its durable (`ensure_durable`),
a pull consumer, so no consumer ever delivers to a subject the city chose. Whatever reply subject the
city names, the answer travels back into the city's account (the server maps it), so it can never
land on a hub subject or in a hub stream. Within its account the user may still only publish on
those services and subscribe on its own inbox prefix (`_INBOX_<name>.>`).

The secret is a random 256-bit token, shown once; only its bcrypt hash is kept (nats-server checks
bcrypt hashes itself). The users live with the embedded server (`nats_auth`); for an external
server, `external_config` gives the accounts an operator merges into its configuration.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import bcrypt
import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.embedded.nats_auth import (
    HUB_USER,
    NatsUser,
    ServiceImport,
    hub_account,
    load_users,
    reload_running,
    save_users,
    user_account,
    users_locked,
)
from services.common.errors import SafetyhubError

STREAM = "FEED"
# The blurred pictures shared events name (services/feed/snapshot_copies.py): a name here, not an
# import, so the credentials module stays free of the bus.
SNAPSHOT_STREAM = "FEED_SNAPSHOTS"
# The JetStream API prefix a city client uses (nats-py: `nc.jetstream(prefix=API_PREFIX)`): the
# hub's `$JS.API` services as imported into the city's account.
API_PREFIX = "HUB.API"
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


def imports(name: str) -> list[ServiceImport]:
    consumer = f"{STREAM}.{name}"

    def api(rest: str, **kwargs: Any) -> ServiceImport:
        return ServiceImport(subject=f"$JS.API.{rest}", to=f"{API_PREFIX}.{rest}", **kwargs)

    return [
        api(f"CONSUMER.MSG.NEXT.{consumer}", response_type="stream"),
        ServiceImport(subject=f"$JS.ACK.{consumer}.>"),  # the acks go where the messages say
        api(f"CONSUMER.INFO.{consumer}"),
        api(f"CONSUMER.RESET.{consumer}"),
        api(f"STREAM.INFO.{STREAM}"),
        api(f"STREAM.MSG.GET.{STREAM}"),
        # The blurred pictures of shared events, by the subject an event names (no consumer).
        api(f"STREAM.MSG.GET.{SNAPSHOT_STREAM}"),
    ]


def publish_allow(name: str) -> list[str]:
    # Exactly the imported services: anything else is refused with a permissions violation
    # instead of going unanswered in an empty account.
    return [imp.to or imp.subject for imp in imports(name)]


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
        imports=imports(name),
        created_at=now.isoformat(),
        created_by=by,
    )
    return NewCredential(user, secret)


def durable_config(name: str) -> ConsumerConfig:
    """The city's pull consumer: it starts at the stream's beginning; the city resets it to replay."""
    return ConsumerConfig(
        durable_name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
    )


async def ensure_durable(js: JetStreamContext, name: str) -> bool:
    """Create the city's durable consumer on FEED with the hub's connection; False if it existed.

    An existing pull consumer is left as it is: its position is the city's. A push consumer of that
    name (one a city could create itself before cities had accounts of their own, delivering where
    it chose) is replaced.
    """
    try:
        info = await js.consumer_info(STREAM, name)
    except nats.js.errors.NotFoundError:
        pass
    else:
        if info.config.deliver_subject is None:
            return False
        await js.delete_consumer(STREAM, name)
    await js.add_consumer(STREAM, durable_config(name))
    return True


async def ensure_durables(js: JetStreamContext, store: Path) -> list[str]:
    """Create the durable of every active city user that has none yet; the names created."""
    created = []
    for user in feed_users(store, include_revoked=False):
        if await ensure_durable(js, user.user):
            created.append(user.user)
    return created


def regrant(store: Path) -> list[str]:
    """Give every active city user the grants of this release (e.g. the blurred pictures of
    FEED_SNAPSHOTS, added after the first credentials were issued) and reload a running server;
    the names changed. The secret and the durable stay: the city changes nothing."""
    with users_locked(store):
        users = load_users(store)
        changed: list[str] = []
        updated = []
        for user in users:
            granted = user
            if is_feed_user(user) and user.revoked_at is None:
                granted = msgspec.structs.replace(
                    user, publish=publish_allow(user.user), imports=imports(user.user)
                )
                if granted != user:
                    changed.append(user.user)
            updated.append(granted)
        if changed:
            save_users(store, updated)
            reload_running(store)
        return changed


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


def external_config(user: NatsUser, hub_users: str) -> str:
    """The `accounts` block for an external nats-server holding FEED: the hub's account (its users
    given as `hub_users`, a `users = [...]` block) exporting to the user's own account."""
    hub = hub_account(hub_users, [user], indent="  ")
    return "accounts {\n" + hub + user_account(user, indent="  ") + "}"


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
