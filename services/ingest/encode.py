"""Build the bus messages of accepted observations: one ObservationBatch per device and request.

Each observation gets its id and envelope here. The observations of one device travel together in
one message on `obs.<tenant>.<site>.<device>`: a gateway's post of a thousand readings from forty
devices becomes forty messages, not a thousand, and each message costs the publisher, the server
and every consumer the same protocol work whatever it carries.

An observation's identity is (tenant, id, time), here, on the stream and in the store alike: the
same key again is a retry (the first copy wins), the same id at another time is another reading,
and the same id in another tenant is another tenant's reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts import (
    OBSERVATION_BATCH_TYPE,
    OBSERVATION_TYPE,
    SCHEMA_VERSION,
    Observation,
    ObservationBatch,
)
from services.common.contracts.cloudevents import ce_headers
from services.common.contracts.ids import derived_id
from services.common.contracts.quality import quality_number
from services.ingest.channel import OBSERVATION_CHANNEL
from services.ingest.domain.checks import OUT_OF_RANGE, Checked
from services.ingest.domain.contract import ObservationIn

# Beyond this a message's delivery and its share of a store batch get coarse; a gateway's post
# rarely holds this many readings of one device.
MAX_PER_MESSAGE = 1_000
# Room left under the server's max_payload for the headers, which count against it too.
HEADER_ROOM = 4_096

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Encoded:
    messages: list[OutgoingMessage]
    # The id of items[i]; "" for an item listed in `oversized`.
    ids: list[str]
    # Indexes of items that alone are larger than one bus message may be.
    oversized: list[int]
    # The kind of each sent observation whose value is outside its registered range.
    out_of_range: list[str] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _split(moment: datetime) -> tuple[int, int]:
    # Cached: the readings of one post usually share a handful of timestamps, and hashing a
    # datetime costs less than the arithmetic.
    delta = moment - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


@lru_cache(maxsize=4096)
def _time_token(moment: tuple[int, int]) -> str:
    """A member's time as it enters a batch id."""
    return f"{moment[0]}.{moment[1]:09d}"


@lru_cache(maxsize=256)
def rfc3339(moment: datetime) -> str:
    # Cached: the readings of one gateway post usually share a handful of timestamps.
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def observation_id(item: ObservationIn, *, tenant: str, received: datetime) -> str:
    """The client's id, or one derived from what identifies the reading (see contracts.ids)."""
    return _observation_id(item, tenant, _split(item.time or received))


def _observation_id(item: ObservationIn, tenant: str, moment: tuple[int, int]) -> str:
    if item.id:
        return item.id
    seconds, nanos = moment
    return derived_id(
        seconds * 1000 + nanos // 1_000_000,
        tenant,
        item.site,
        item.device,
        item.kind,
        f"{seconds}.{nanos:09d}",
        repr(item.value),
        repr(item.confidence),
    )


def _template(*, tenant: str, site: str, device: str, source: str, received: datetime) -> Observation:
    """What every observation of one message shares: copied into each, then its own fields set.

    One copy costs less than setting these fields one by one: each set is a call into upb that
    looks the field up by name."""
    obs = Observation(device=device)
    env = obs.envelope
    env.type = OBSERVATION_TYPE
    env.source = source
    env.tenant = tenant
    env.site = site
    env.schema_version = SCHEMA_VERSION
    obs.received.seconds, obs.received.nanos = _split(received)
    return obs


def _fill(obs: Observation, item: ObservationIn, message_id: str, moment: tuple[int, int]) -> None:
    """Write `item` into `obs` (a copy of its message's `_template`) under `message_id`, at
    `moment` (seconds, nanos)."""
    obs.kind = item.kind
    if item.unit:
        obs.unit = item.unit
    obs.quality = quality_number(item.quality)
    if isinstance(item, Checked) and item.quality_reason:
        obs.quality_reason = item.quality_reason
    if item.snapshot:
        obs.snapshot = item.snapshot
    if item.attributes:  # an empty map assignment still costs a call into upb
        obs.attributes.update(item.attributes)
    env = obs.envelope
    env.id = message_id
    env.time.seconds, env.time.nanos = moment
    env.correlation_id = item.correlation_id or message_id
    if item.value is not None:
        obs.value = item.value
    if item.confidence is not None:
        obs.confidence = item.confidence
    if item.box is not None:
        obs.box.x, obs.box.y, obs.box.width, obs.box.height = (
            item.box.x,
            item.box.y,
            item.box.width,
            item.box.height,
        )
    if item.position is not None:
        obs.position.latitude = item.position.latitude
        obs.position.longitude = item.position.longitude
        if item.position.altitude is not None:
            obs.position.altitude = item.position.altitude


class _Packer:
    def __init__(
        self,
        items: Sequence[ObservationIn],
        *,
        tenant: str,
        source: str,
        received: datetime,
        max_payload: int,
    ) -> None:
        self._items = items
        self._tenant = tenant
        self._source = source
        self._received = received
        self._max_payload = max_payload
        self.messages: list[OutgoingMessage] = []
        # (seconds, nanos) of each item's time in UTC: with the tenant and the id, its identity.
        self.moments = [_split(item.time or received) for item in items]
        # Most gateways send their own ids: only items without one pay for a derived id.
        self.ids = [
            item.id or _observation_id(item, tenant, m) for item, m in zip(items, self.moments, strict=True)
        ]
        self.oversized: list[int] = []

    def pack(self, subject: str, site: str, indexes: Sequence[int]) -> None:
        batch = ObservationBatch()
        add = batch.observations.add
        items, ids, moments = self._items, self.ids, self.moments
        first = items[indexes[0]]
        template = _template(
            tenant=self._tenant, site=site, device=first.device, source=self._source, received=self._received
        )
        # Derived from the tenant and each member's id and time, even for a batch of one: a
        # retried post gets the same id and JetStream drops it, while another tenant's reading
        # with the same client id (which a raw client id as Nats-Msg-Id would have collided
        # with) is another message. Ids and slugs hold no U+001F, so the parts cannot run together.
        members: list[str] = []
        stamp: tuple[int, int] | None = None  # the earliest time a member was sent with
        earliest = moments[indexes[0]]  # the earliest time of all, as (seconds, nanos)
        earliest_index = indexes[0]
        for index in indexes:
            item, when = items[index], moments[index]
            obs = add()
            obs.CopyFrom(template)
            _fill(obs, item, ids[index], when)
            if when < earliest:
                earliest, earliest_index = when, index
            # An item with a client id but no time is stamped on arrival, so a retry of it has
            # another time: name it by its id alone here, and the stream drops the retry within
            # its duplicate window (the store, keyed on time too, cannot).
            if item.time is None and item.id:
                members += (ids[index], "untimed")
                continue
            members += (ids[index], _time_token(when))
            if stamp is None or when < stamp:
                stamp = when
        stamp_ms = stamp[0] * 1000 + stamp[1] // 1_000_000 if stamp is not None else 0
        batch_id = derived_id(stamp_ms, "batch", self._tenant, *members)
        env = batch.envelope
        env.id = batch_id
        env.type = OBSERVATION_BATCH_TYPE
        env.source = self._source
        env.time.seconds, env.time.nanos = earliest
        env.tenant = self._tenant
        env.site = site
        env.correlation_id = batch_id
        env.schema_version = SCHEMA_VERSION
        payload = batch.SerializeToString()
        if len(payload) > self._max_payload:
            if len(indexes) == 1:
                self.ids[indexes[0]] = ""
                self.oversized.append(indexes[0])
                return
            half = len(indexes) // 2
            self.pack(subject, site, indexes[:half])
            self.pack(subject, site, indexes[half:])
            return
        measured = items[earliest_index].time or self._received
        headers = ce_headers(
            id=batch_id, type=OBSERVATION_BATCH_TYPE, source=self._source, time=rfc3339(measured)
        )
        self.messages.append(OutgoingMessage(subject, payload, headers, count=len(indexes)))


def encode_observations(
    items: Sequence[ObservationIn],
    *,
    tenant: str,
    source: str,
    received: datetime,
    max_per_message: int = MAX_PER_MESSAGE,
    max_payload: int = 1024 * 1024 - HEADER_ROOM,
) -> Encoded:
    """The messages carrying `items`: one per device (more past `max_per_message` or `max_payload`).

    An id that repeats within `items` with the same time is the same observation sent twice,
    whatever else differs: only its first item travels (as the store, keyed on tenant, id and
    time, would also keep only the first when the copies travel apart), and every repeat is listed
    under that id. The same id with another time is another observation and travels too.
    """
    packer = _Packer(items, tenant=tenant, source=source, received=received, max_payload=max_payload)
    by_device: dict[tuple[str, str], list[int]] = {}
    repeats: list[tuple[int, int]] = []
    if len(set(packer.ids)) == len(items):  # the common post: no id twice, nothing to compare
        for index, item in enumerate(items):
            by_device.setdefault((item.site, item.device), []).append(index)
    else:
        first_of: dict[tuple[str, tuple[int, int]], int] = {}  # (id, time) -> its first item
        keys = zip(packer.ids, packer.moments, strict=True)
        for index, (item, key) in enumerate(zip(items, keys, strict=True)):
            first = first_of.setdefault(key, index)
            if first != index:
                repeats.append((index, first))
                continue
            by_device.setdefault((item.site, item.device), []).append(index)
    for (site, device), indexes in by_device.items():
        subject = OBSERVATION_CHANNEL.subject(tenant, site, device)
        for start in range(0, len(indexes), max_per_message):
            packer.pack(subject, site, indexes[start : start + max_per_message])
    for index, first in repeats:
        if packer.ids[first] == "":  # its first item was too large to send, and so is this one
            packer.ids[index] = ""
            packer.oversized.append(index)
    packer.oversized.sort()
    repeated = {index for index, _ in repeats}
    # Checked items are the rare ones check() changed (type, not isinstance: a plain item is
    # never one), so the common post pays one cheap test per item.
    out_of_range = [
        item.kind
        for i, item in enumerate(items)
        if type(item) is Checked and packer.ids[i] and i not in repeated and _out_of_range(item)
    ]
    return Encoded(packer.messages, packer.ids, packer.oversized, out_of_range)


def _out_of_range(item: ObservationIn) -> bool:
    return isinstance(item, Checked) and (item.quality_reason or "").startswith(OUT_OF_RANGE)


def to_message(item: ObservationIn, *, tenant: str, source: str, received: datetime) -> OutgoingMessage:
    """The message of one observation alone (a batch of one)."""
    encoded = encode_observations([item], tenant=tenant, source=source, received=received)
    if encoded.oversized:
        raise ValueError("the observation is larger than one bus message may be")
    return encoded.messages[0]
