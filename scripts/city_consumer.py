"""How a city system follows the hub's FEED stream with the credentials `safetyhub feed credentials
create` printed: a durable pull consumer named like the user, one CloudEvent per line on stdout,
each acknowledged after it was written.

    python scripts/city_consumer.py --url 'nats://city-ulsan:SECRET@hub.example:4222'
    python scripts/city_consumer.py --url ... --since 2026-12-01T08:00:00Z   # replay from a time
    python scripts/city_consumer.py --url ... --from-seq 1200                 # replay from a sequence

Without --since / --from-seq it resumes where its durable consumer stopped (from the start of the
stream the first time). A replay deletes the durable consumer and creates it again at the new
start: the credentials allow exactly that, on that one consumer. Output lines are JSON objects:
`{"seq": <stream sequence>, "subject": ..., "time": <when FEED stored it>, "event": <CloudEvent>}`.
Needs only `nats-py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "FEED"


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +09:00")
    return moment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Follow the safetyhub FEED stream as a city platform")
    parser.add_argument("--url", required=True, help="nats://USER:SECRET@HOST:PORT, as printed at creation")
    parser.add_argument("--durable", help="the durable consumer (default: the user of the URL)")
    parser.add_argument("--inbox-prefix", help="the inbox prefix (default: _INBOX_<user>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", type=_time, help="replay from this time (ISO 8601 with a zone)")
    start.add_argument("--from-seq", type=int, help="replay from this stream sequence (1 is the first)")
    parser.add_argument("--batch", type=int, default=100, help="messages asked for at a time (default 100)")
    parser.add_argument("--count", type=int, help="stop after this many events (default: follow forever)")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new event")
    return parser


def _config(durable: str, args: argparse.Namespace) -> ConsumerConfig:
    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
    if args.since is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = args.since.astimezone(UTC)
    elif args.from_seq is not None:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = args.from_seq
    else:
        config.deliver_policy = DeliverPolicy.ALL
    return config


def line(msg: Msg) -> str:
    meta = msg.metadata
    try:
        event: object = json.loads(msg.data)
    except ValueError:
        event = msg.data.decode(errors="replace")
    stored = meta.timestamp.astimezone(UTC).isoformat() if meta.timestamp else None
    return json.dumps({"seq": meta.sequence.stream, "subject": msg.subject, "time": stored, "event": event})


async def follow(args: argparse.Namespace) -> int:
    user = urlsplit(args.url).username
    if not user:
        print(
            "city_consumer: --url must carry the user and secret (nats://USER:SECRET@HOST:PORT)",
            file=sys.stderr,
        )
        return 2
    durable = args.durable or user
    nc = await nats.connect(args.url, inbox_prefix=args.inbox_prefix or f"_INBOX_{user}", connect_timeout=5)
    try:
        js = nc.jetstream()
        if args.since is not None or args.from_seq is not None:
            # A consumer's start is fixed when it is created: a replay starts a fresh one.
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(STREAM, durable)
            await js.add_consumer(STREAM, _config(durable, args))
        else:
            try:
                await js.consumer_info(STREAM, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(STREAM, _config(durable, args))
        sub = await js.pull_subscribe_bind(durable, STREAM)
        seen = 0
        idle_since = asyncio.get_running_loop().time()
        while args.count is None or seen < args.count:
            wanted = args.batch if args.count is None else min(args.batch, args.count - seen)
            try:
                messages = await sub.fetch(wanted, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                if (
                    args.idle_exit is not None
                    and asyncio.get_running_loop().time() - idle_since > args.idle_exit
                ):
                    break
                continue
            idle_since = asyncio.get_running_loop().time()
            for msg in messages:
                print(line(msg), flush=True)
                await msg.ack()  # after the line is out: a crash in between shows it again
                seen += 1
        print(f"city_consumer: {seen} events", file=sys.stderr)
        return 0
    finally:
        # flush sends the last acknowledgements; not drain(), which waits out its timeout on a
        # pull subscription's inbox.
        with contextlib.suppress(nats.errors.Error):
            await nc.flush(timeout=5)
        await nc.close()


def main() -> int:
    return asyncio.run(follow(_parser().parse_args()))


if __name__ == "__main__":
    sys.exit(main())
