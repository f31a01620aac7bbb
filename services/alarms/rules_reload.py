"""The alarm rules in use, and their reload when the rule files or the site registry change.

A sibling of the site reloader (services/common/sites/reload.py): every `interval` seconds the rule
paths are expanded and fingerprinted by content, and the site registry in use is compared with the
one the rules were checked against (a site reload swaps it). On either change the rules are loaded
and validated again as at start-up; a refused set is logged with file, line and key and counted,
and the last valid rules stay in use: a typo in a rule file must not silence the plant's alarms.

Where the rules are: `alarms.rules` in the config. Without it, the `alarms/` folder beside each
configured site path (`sites/*.yaml` -> `sites/alarms/*.yaml`), so the demo's rules follow its
sites wherever a config puts them. Explicit paths that match no file stop start-up; the default
matching none runs with no rules and says so in the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from services.alarms import metrics
from services.alarms.domain.engine import Engine
from services.alarms.domain.rules import DeviceRef, RuleIndex, RuleSet
from services.alarms.rule_loader import load_rule_set
from services.common.errors import ConfigError
from services.common.logging import get_logger
from services.common.sites.alert_devices import DEVICE_TYPE as ALERT_DEVICE_TYPE
from services.common.sites.alert_devices import is_alert_device
from services.common.sites.registry import SiteRegistry
from services.common.watch import Watcher, fingerprint

log = get_logger(__name__)

EMPTY = RuleSet(RuleIndex(()))


def rule_patterns(rules: list[str] | None, sites: list[str], base: Path) -> list[Path]:
    """The rule paths and globs made absolute against `base` (see the module's doc)."""
    if rules is None:
        rules = sorted({str(Path(pattern).parent / "alarms" / "*.yaml") for pattern in sites})
    return [Path(p) if Path(p).is_absolute() else base / p for p in rules]


def expand(patterns: list[Path]) -> list[Path]:
    """The files the patterns name, in a stable order."""
    found: list[Path] = []
    for pattern in patterns:
        if any(ch in str(pattern) for ch in "*?["):
            anchor = Path(pattern.anchor)
            found.extend(m for m in sorted(anchor.glob(str(pattern.relative_to(anchor)))) if m.is_file())
        else:
            found.append(pattern)
    return list(dict.fromkeys(found))


def device_lookup(
    registry: SiteRegistry,
) -> Callable[[str, str, str], tuple[DeviceRef, tuple[str, ...]] | None]:
    """The engine's view of the registry: where a device sits and what it measures, memoised."""
    memo: dict[tuple[str, str, str], tuple[DeviceRef, tuple[str, ...]] | None] = {}

    def lookup(tenant: str, site: str, device: str) -> tuple[DeviceRef, tuple[str, ...]] | None:
        key = (tenant, site, device)
        if key not in memo:
            found = registry.device(site, device)
            if registry.tenant_of(site) != tenant:
                memo[key] = None
            elif found is None:
                # An alert is a device of its own, not in the site files: placed at its site with
                # no zone, watched by the rules of its kind (alert_devices.py).
                alert = is_alert_device(device)
                memo[key] = (DeviceRef(site, "", ALERT_DEVICE_TYPE, device), ()) if alert else None
            else:
                ref = DeviceRef(site, found.zone, found.type, found.id)
                memo[key] = (ref, tuple(m.kind for m in found.measures))
        return memo[key]

    return lookup


class Rules(Watcher):
    """The rule set in use and the engine built on it with the registry it was checked against."""

    def __init__(
        self, patterns: list[Path], sites: Callable[[], SiteRegistry], *, explicit: bool = True
    ) -> None:
        super().__init__(name="alarm-rules-reloader")
        self._patterns = patterns
        self._sites = sites
        self._explicit = explicit
        self._rules = EMPTY
        self._registry: SiteRegistry | None = None
        self._loaded: str | None = None
        self._engine = Engine(EMPTY, lambda *_: None)
        self.ready = False

    def rules(self) -> RuleSet:
        return self._rules

    def engine(self) -> Engine:
        return self._engine

    def load(self) -> None:
        """Load at start-up (blocking); raises ConfigError naming file, line and key."""
        files = expand(self._patterns)
        registry = self._sites()
        if not files:
            where = ", ".join(str(p) for p in self._patterns)
            if self._explicit:
                raise ConfigError("alarms.rules", None, "rules", f"no alarm rule file found at {where}")
            log.warning("no_alarm_rules", looked_at=where, hint="set `alarms.rules` to the rule files")
        rules = load_rule_set(files, registry) if files else EMPTY
        self._install(rules, registry, fingerprint(files))
        log.info("alarm_rules_loaded", files=[str(f) for f in files], rules=len(rules.rules))

    def start(self, interval: float) -> None:
        if interval > 0:
            self.watch(interval)

    async def check(self) -> bool:
        """Reload if the files or the site registry changed; True when new rules are in use."""
        files = await asyncio.to_thread(expand, self._patterns)
        current = await asyncio.to_thread(fingerprint, files)
        registry = self._sites()
        if current == self._loaded and registry is self._registry:
            return False
        # Remembered before loading: a bad file is reported once, not every tick.
        self._loaded, self._registry = current, registry
        if not files and self._explicit:
            self._refused(error="no alarm rule file matches the configured paths")
            return False
        try:
            rules = await asyncio.to_thread(load_rule_set, files, registry) if files else EMPTY
        except ConfigError as err:
            self._refused(file=err.file, line=err.line, key=err.key, error=str(err))
            return False
        self._install(rules, registry, current)
        metrics.RULES_RELOADS.labels("ok").inc()
        log.info("alarm_rules_reloaded", files=[str(f) for f in files], rules=len(rules.rules))
        return True

    def _install(self, rules: RuleSet, registry: SiteRegistry, loaded: str) -> None:
        self._rules, self._registry, self._loaded = rules, registry, loaded
        self._engine = Engine(rules, device_lookup(registry))
        self.ready = True

    def _refused(self, **why: object) -> None:
        metrics.RULES_RELOADS.labels("failed").inc()
        log.error("alarm_rules_reload_failed", kept="the last valid alarm rules", **why)
