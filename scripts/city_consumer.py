"""How a city system follows the hub's FEED stream with the credentials `safetyhub feed credentials
create` printed: a durable pull consumer named like the user, one CloudEvent per line on stdout,
each acknowledged after it was written.

    python scripts/city_consumer.py --url 'nats://city-ulsan:SECRET@hub.example:4222'
    python scripts/city_consumer.py --url ... --since 2026-12-01T08:00:00Z   # replay from a time
    python scripts/city_consumer.py --url ... --from-seq 1200                 # replay from a sequence
    python scripts/city_consumer.py --url ... --pictures ./pictures           # save shared pictures

Without --since / --from-seq it resumes where its durable consumer stopped (from the start of the
stream the first time). The hub creates that consumer; the city cannot create or delete consumers.
A replay resets it to the new start (the server's consumer reset, to a stream sequence; a time is
first turned into the sequence of FEED's first message at or after it): the credentials allow
exactly that, on that one consumer. Output lines are JSON objects:
`{"seq": <stream sequence>, "subject": ..., "time": <when FEED stored it>, "event": <CloudEvent>}`.
With --pictures DIR, each picture an event names (an alarm's `snapshot`, an incident's
`snapshots`: subjects `feedsnap.<tenant>.<site>.<ref>` of copies with faces blurred) is fetched
from the FEED_SNAPSHOTS stream by its subject and saved as DIR/<subject>.jpg, and the line gets
`"pictures": [<paths>]`. Needs only `nats-py`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

STREAM = "FEED"
PICTURES = "FEED_SNAPSHOTS"
# The hub's JetStream API as the city's account imports it (the city has no JetStream of its own).
API_PREFIX = "HUB.API"


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +09:00")
    return moment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Follow the safetyhub FEED stream as a city platform")
    parser.add_argument("--url", required=True, help="nats://USER:SECRET@HOST:PORT, as printed at creation")
    parser.add_argument("--durable", help="the durable consumer (default: the user of the URL)")
    parser.add_argument(
        "--api-prefix", default=API_PREFIX, help=f"the hub's JetStream API prefix (default {API_PREFIX})"
    )
    parser.add_argument("--inbox-prefix", help="the inbox prefix (default: _INBOX_<user>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", type=_time, help="replay from this time (ISO 8601 with a zone)")
    start.add_argument("--from-seq", type=int, help="replay from this stream sequence (1 is the first)")
    parser.add_argument("--batch", type=int, default=100, help="messages asked for at a time (default 100)")
    parser.add_argument("--count", type=int, help="stop after this many events (default: follow forever)")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new event")
    parser.add_argument(
        "--pictures", type=Path, help="save the blurred pictures events name in this directory"
    )
    return parser


async def _start_seq(nc: nats.NATS, args: argparse.Namespace) -> int | None:
    """The stream sequence a replay starts at, or None to resume."""
    if args.from_seq is not None:
        return int(args.from_seq)
    if args.since is None:
        return None
    since = args.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    answer = await _api(nc, f"{args.api_prefix}.STREAM.MSG.GET.{STREAM}", {"start_time": since})
    if "message" in answer:
        return int(answer["message"]["seq"])
    # Nothing stored at or after that time: start after the last message.
    info = await _api(nc, f"{args.api_prefix}.STREAM.INFO.{STREAM}", {})
    return int(info["state"]["last_seq"]) + 1


async def _api(nc: nats.NATS, subject: str, request: dict[str, object]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(request).encode(), timeout=5)
    answer: dict[str, Any] = json.loads(reply.data)
    error = answer.get("error")
    if error is not None and error.get("err_code") != 10037:  # 10037: no message found
        raise RuntimeError(f"{subject}: {error.get('description')}")
    return answer


def line(msg: Msg, pictures: list[str] | None = None) -> str:
    meta = msg.metadata
    event = _event(msg)
    stored = meta.timestamp.astimezone(UTC).isoformat() if meta.timestamp else None
    out: dict[str, object] = {
        "seq": meta.sequence.stream,
        "subject": msg.subject,
        "time": stored,
        "event": event,
    }
    if pictures is not None:
        out["pictures"] = pictures
    return json.dumps(out)


def _event(msg: Msg) -> object:
    try:
        event: object = json.loads(msg.data)
    except ValueError:
        event = msg.data.decode(errors="replace")
    return event


def named_pictures(event: object) -> list[str]:
    """The blurred pictures' subjects an event names."""
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        return []
    named = [data.get("snapshot"), *(data.get("snapshots") or [])]
    return [s for s in named if isinstance(s, str) and s.startswith("feedsnap.")]


async def save_pictures(nc: nats.NATS, args: argparse.Namespace, event: object) -> list[str]:
    """Fetch each picture the event names from FEED_SNAPSHOTS and save it; the paths saved."""
    saved = []
    for subject in named_pictures(event):
        path = args.pictures / f"{subject}.jpg"
        if not path.exists():
            answer = await _api(nc, f"{args.api_prefix}.STREAM.MSG.GET.{PICTURES}", {"last_by_subj": subject})
            if "message" not in answer:
                print(f"city_consumer: no picture {subject} (past its retention)", file=sys.stderr)
                continue
            path.write_bytes(base64.b64decode(answer["message"]["data"]))
        saved.append(str(path))
    return saved


async def follow(args: argparse.Namespace) -> int:
    user = urlsplit(args.url).username
    if not user:
        print(
            "city_consumer: --url must carry the user and secret (nats://USER:SECRET@HOST:PORT)",
            file=sys.stderr,
        )
        return 2
    durable = args.durable or user
    if args.pictures is not None:
        args.pictures.mkdir(parents=True, exist_ok=True)
    nc = await nats.connect(args.url, inbox_prefix=args.inbox_prefix or f"_INBOX_{user}", connect_timeout=5)
    try:
        js = nc.jetstream(prefix=args.api_prefix)
        try:
            await js.consumer_info(STREAM, durable)
        except nats.js.errors.NotFoundError:
            print(
                f"city_consumer: FEED has no consumer {durable!r} yet; the hub creates it (ask its operator)",
                file=sys.stderr,
            )
            return 1
        start = await _start_seq(nc, args)
        if start is not None:
            await _api(nc, f"{args.api_prefix}.CONSUMER.RESET.{STREAM}.{durable}", {"seq": start})
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
                pictures = None
                if args.pictures is not None:
                    pictures = await save_pictures(nc, args, _event(msg))
                print(line(msg, pictures), flush=True)
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
