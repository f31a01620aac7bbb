"""From an MQTT message (topic and JSON payload) to observations, by the configured templates.
Pure: no I/O, the site registry and the time are parameters.

The first template whose pattern matches the topic maps it. Its named levels give tenant, site,
device and kind; its JSON paths pick value, unit, time, quality and id out of the payload. A
payload is one JSON object (one observation), an array of them, or a bare number (with
`value: $`). A time may be RFC 3339 with an offset or a Unix time in seconds or milliseconds.
What cannot be mapped is an `Unmapped` with the reason, for the dead-letter stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.common.sites.registry import SiteRegistry
from services.common.validation import locate
from services.ingest.bridges.mqtt_config import TopicTemplate
from services.ingest.domain.checks import ItemError
from services.ingest.domain.contract import ObservationIn
from services.ingest.domain.explain import explain
from services.ingest.intake import Checked, Limits, check_all

_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")
_MISSING = object()
# A Unix time above this is in milliseconds (it would be the year 5138 in seconds).
_MS_THRESHOLD = 1e11
_MAX_ITEMS = 1_000


class Unmapped(Exception):
    """The message cannot become observations; the text says why (it goes to DEADLETTER), the
    category is the metric's label (unmatched_topic, malformed, unknown_site, too_large)."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category


def resolve_tenant(items: Iterable[ObservationIn], tenant: str | None, registry: SiteRegistry) -> str:
    """The tenant the items are published for: `tenant` (from the topic or the config) when each
    item's site is that tenant's, or the sites' one owner in the registry when none is given."""
    for site in sorted({item.site for item in items}):
        owner = registry.tenant_of(site)
        # One answer whether the site is unknown or another tenant's, as over HTTP.
        if owner is None or (tenant is not None and owner != tenant):
            who = f"tenant '{tenant}'" if tenant is not None else "any tenant"
            raise Unmapped("unknown_site", f"site '{site}' is not a site of {who} in the site registry")
        tenant = owner
    return tenant or ""  # "": every item was refused before its site was known


def _compile_path(path: str) -> tuple[str | int, ...]:
    return tuple(name if name else int(index) for name, index in _TOKEN.findall(path[1:]))


def _get(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _MISSING
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
    return node


def _time(raw: Any) -> Any:
    """A Unix time (s or ms) as an aware datetime; anything else is left to the contract's check."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return raw
    seconds = raw / 1000 if abs(raw) > _MS_THRESHOLD else raw
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return raw  # refused below with the field named


@dataclass(frozen=True, slots=True)
class _Compiled:
    template: TopicTemplate
    levels: tuple[tuple[str, bool], ...]  # (literal or field name, is a named level)
    paths: dict[str, tuple[str | int, ...]]


@dataclass(slots=True)
class Mapped:
    """What one message became: the tenant's checked observations and the refused items."""

    tenant: str
    template: int
    checked: Checked = field(default_factory=Checked)
    count: int = 0


class TopicMap:
    def __init__(self, templates: Sequence[TopicTemplate]) -> None:
        self._compiled: list[_Compiled] = []
        for template in templates:
            levels = tuple(
                (s[1:-1], True) if s.startswith("{") else (s, False) for s in template.pattern.split("/")
            )
            paths = {
                name: _compile_path(path)
                for name, path in (
                    ("value", template.value),
                    ("unit", template.unit),
                    ("time", template.time),
                    ("quality", template.quality),
                    ("id", template.id),
                    ("site", template.site_path),
                    ("device", template.device_path),
                    ("kind", template.kind_path),
                )
                if path is not None
            }
            self._compiled.append(_Compiled(template, levels, paths))

    @property
    def subscriptions(self) -> list[str]:
        return sorted({c.template.subscription for c in self._compiled})

    def _match(self, topic: str) -> tuple[int, _Compiled, dict[str, str]] | None:
        parts = topic.split("/")
        for number, compiled in enumerate(self._compiled):
            if len(parts) != len(compiled.levels):
                continue
            named: dict[str, str] = {}
            for part, (level, is_named) in zip(parts, compiled.levels, strict=True):
                if is_named:
                    named[level] = part
                elif level not in ("+", part):
                    break
            else:
                return number, compiled, named
        return None

    def map(
        self, topic: str, payload: bytes, registry: SiteRegistry, now: datetime, limits: Limits
    ) -> Mapped:
        """The observations of one message, checked as the HTTP path checks them.

        Raises Unmapped when nothing of the message can be used: no template matches, the payload
        is not JSON, the site is not the tenant's. Items refused one by one are in `errors`.
        """
        found = self._match(topic)
        if found is None:
            raise Unmapped("unmatched_topic", f"no topic template matches '{topic[:200]}'")
        number, compiled, named = found
        try:
            document = msgspec.json.decode(payload)
        except msgspec.DecodeError as err:
            raise Unmapped("malformed", f"malformed JSON: {err}") from err
        except RecursionError as err:
            raise Unmapped("malformed", "the JSON is nested too deeply") from err
        documents = document if isinstance(document, list) else [document]
        if len(documents) > _MAX_ITEMS:
            raise Unmapped(
                "too_large", f"the message carries {len(documents)} items; at most {_MAX_ITEMS} are accepted"
            )
        if not documents:
            raise Unmapped("malformed", "the message carries no observation (an empty array)")
        template = compiled.template
        items: list[tuple[int, ObservationIn]] = []
        errors: list[ItemError] = []
        for index, doc in enumerate(documents):
            fields: dict[str, Any] = {}
            for name in ("site", "device", "kind"):
                fixed = named.get(name, getattr(template, name))
                if fixed is not None:
                    fields[name] = fixed
            for name, path in compiled.paths.items():
                value = _get(doc, path)
                if value is not _MISSING and value is not None:
                    fields[name] = _time(value) if name == "time" else value
            try:
                items.append((index, msgspec.convert(fields, ObservationIn)))
            except msgspec.ValidationError as err:
                where, detail = explain(locate(err))
                errors.append(ItemError(index, where, detail))
        tenant = resolve_tenant((item for _, item in items), named.get("tenant", template.tenant), registry)
        checked = check_all(items, registry, now, limits)
        checked.errors.extend(errors)
        checked.errors.sort(key=lambda e: e.index)
        return Mapped(tenant, number, checked, len(documents))
