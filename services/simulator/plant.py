"""A pure, synchronous plant: one reading per device measure per tick, for every site.

Signals look like a refinery at rest (gas near zero, machines running smoothly, process values
wandering slowly around set points) with upsets on top, so a newcomer watching the demo sees a
few meaningful alarms and no standing ones: now and then a small sour-gas leak (H2S in
hydrocarbon vapour) reaching neighbouring detectors of one zone past the high alarm, a pump
running rough, and a detector fault; and at the demo refinery the alarm scenarios of
alarm_scenarios.py (a gas release confirmed 2oo3 with a silent detector and the camera, a
chattering pump, a flood after a power dip). Normal operation stays below every shipped alarm
set-point (sites/alarms/ulsan-demo.yaml) and the random upsets stop short of the high-high ones:
an operator is not given an emergency the plant does not have. Output follows from the seed and
the sequence of `now` values alone; no clock is read here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from services.common.sites.model import Device, LatLon, Measure, Site
from services.common.sites.registry import SiteRegistry
from services.simulator import alarm_scenarios
from services.simulator.alarm_scenarios import NO_EFFECT, Effect

Reading = dict[str, object]
UpsetKind = Literal["release", "vibration", "fault", "gas_release", "chatter", "power_dip"]

# What a small sour-gas leak raises, and the source detector's peak range for each: past the
# high alarms (H2S 10 ppm, 20 %LEL), short of the high-highs (20 ppm, 40 %LEL) even with the
# normal band and the noise on top. A high-high means evacuate: only a real release may reach it.
_PEAK = {"gas.h2s": (12.0, 16.0), "gas.lel": (23.0, 30.0)}
# Detectors further from the source see less: the nearest neighbour may pass the high alarm too.
_DILUTION = (1.0, 0.8, 0.6)
# Off-site (a city's fence-line stations) a plant's leak arrives diluted: past the 1 ppm odour
# alarm, far below the 10 ppm high-high.
_OFF_SITE_DILUTION = 0.15
# Normal band per gas: low, high, centre, drift sd, noise sd.
_GAS = {
    "gas.h2s": (0.0, 1.0, 0.3, 0.15, 0.08),
    "gas.co": (0.0, 5.0, 1.5, 0.8, 0.3),
    "gas.lel": (0.0, 2.0, 0.5, 0.3, 0.1),
    "gas.o2": (20.7, 20.95, 20.85, 0.03, 0.015),
}
_DRIFT_TAU_S = 300.0  # process values wander over minutes, not seconds
_SPIKE_EVERY_S = 300.0  # mean time between harmless vibration spikes on one sensor
# ISO 10816-3 zones A/B, where a healthy machine runs: below the 2.8 mm/s high alarm of the
# pumps (group 2) with room for the noise and the drift.
_VIBRATION_CENTRE = (1.0, 1.8)
_VIBRATION_BAND = (0.4, 2.3)
# A pump running rough: ISO 10816-3 zone C (past 2.8 mm/s), short of zone D (4.5 mm/s).
_ROUGH_VIBRATION = (3.3, 4.1)
_RAMP_VIBRATION_S = 15.0
_FAULT_TYPES = frozenset({"gas_detector", "flame_detector", "heat_detector"})


@dataclass(frozen=True, kw_only=True)
class ScenarioConfig:
    """When upsets happen, in seconds after the first tick. A `*_first_s` of `math.inf` disables one."""

    # The plant's random upsets: at each site a leak, a rough pump and a detector fault once an
    # hour, 20 minutes apart, the sites taking turns (each runs `release_period_s / sites` later
    # than the one before): something every few minutes somewhere, and per site a few alarms an
    # hour, inside ISA-18.2's ~6 an hour for one operator.
    release_first_s: float = 300.0
    release_period_s: float = 3600.0
    release_ramp_s: float = 30.0
    release_hold_s: float = 10.0
    release_decay_s: float = 120.0
    vibration_first_s: float = 1500.0
    vibration_period_s: float = 3600.0
    vibration_s: float = 90.0
    fault_first_s: float = 2700.0
    fault_period_s: float = 3600.0
    fault_s: float = 5.0
    # The alarm scenarios of the demo refinery (alarm_scenarios.py), one after the other.
    gas_release_first_s: float = 20.0
    gas_release_period_s: float = 900.0
    gas_release_s: float = 150.0
    chatter_first_s: float = 240.0
    chatter_period_s: float = 900.0
    chatter_s: float = 300.0  # five swings: ten transitions in five minutes
    power_dip_first_s: float = 600.0
    power_dip_period_s: float = 900.0
    power_dip_s: float = 15.0  # past the fault alarms' 5 s on-delay

    def __post_init__(self) -> None:
        for name in (
            "release_period_s",
            "vibration_period_s",
            "fault_period_s",
            "gas_release_period_s",
            "chatter_period_s",
            "power_dip_period_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, kw_only=True)
class Upset:
    """One scripted upset active at a tick: what, where, how far along and how strong."""

    kind: UpsetKind
    site: str
    zone: str
    index: int  # the n-th upset of this kind at this site, from 0
    age_s: float  # seconds since it began
    level: float  # 0 (normal) to 1 (peak)
    devices: tuple[str, ...]
    peaks: tuple[tuple[str, str, float], ...]  # (device, kind, value at level 1); empty for faults
    effect: Effect = NO_EFFECT  # an alarm scenario's doings (alarm_scenarios.py)


@dataclass
class _Channel:
    """One device measure: its normal behaviour and its slowly wandering drift."""

    device: Device
    measure: Measure
    centre: float
    drift_sd: float
    noise_sd: float
    low: float
    high: float
    spiky: bool = False
    drift: float = 0.0


@dataclass(frozen=True)
class _SitePlan:
    site: Site
    offset: float  # seconds this site's upsets run late, so several sites take turns
    channels: tuple[_Channel, ...]
    plume_groups: tuple[tuple[Device, ...], ...]  # per zone, its H2S/LEL detectors
    vibration: tuple[_Channel, ...]  # pumps if any are described as such, else every sensor
    detectors: tuple[Device, ...]  # what may go into fault
    scripted: bool = False  # the demo refinery: the alarm scenarios run here


class PlantSimulator:
    """Readings for every device measure of every site in `registry`, one `tick(now)` at a time."""

    def __init__(
        self,
        registry: SiteRegistry,
        *,
        seed: int = 7,
        scenarios: ScenarioConfig | None = None,
        filmed: Collection[tuple[str, str]] = (),
    ) -> None:
        """`filmed`: the (site, device) cameras whose pictures a real video pipeline analyses;
        their `video.*` kinds come from it, so they get no simulated reading here."""
        self._seed = seed
        self._cfg = scenarios or ScenarioConfig()
        self._rng = random.Random(seed)
        sites = registry.sites
        self._plans = [
            _plan(
                site,
                seed,
                self._cfg.release_period_s * i / len(sites),
                filmed={device for at, device in filmed if at == site.id},
            )
            for i, site in enumerate(sites)
        ]
        self._start: datetime | None = None
        self._last: datetime | None = None

    def tick(self, now: datetime) -> dict[str, list[Reading]]:
        """Advances to `now` (timezone-aware) and returns each site's readings, JSON-ready."""
        _require_aware(now)
        if self._start is None:
            self._start = now
        dt = 0.0 if self._last is None else min(max((now - self._last).total_seconds(), 0.0), 3600.0)
        self._last = now
        elapsed = (now - self._start).total_seconds()
        stamp = now.astimezone(UTC).isoformat()
        return {plan.site.id: self._readings(plan, elapsed, dt, stamp) for plan in self._plans}

    def upsets(self, now: datetime) -> list[Upset]:
        """The upsets active at `now` (none before the first tick), e.g. to log what is going on."""
        _require_aware(now)
        if self._start is None:
            return []
        elapsed = (now - self._start).total_seconds()
        return [upset for plan in self._plans for upset in self._active(plan, elapsed)]

    def _readings(self, plan: _SitePlan, elapsed: float, dt: float, stamp: str) -> list[Reading]:
        rng = self._rng
        values: dict[tuple[str, str], float] = {}
        for ch in plan.channels:
            if dt > 0 and ch.drift_sd > 0:
                # Exact Ornstein-Uhlenbeck step: the drift stays near its sd whatever the tick rate.
                decay = math.exp(-dt / _DRIFT_TAU_S)
                ch.drift = ch.drift * decay + ch.drift_sd * math.sqrt(1 - decay * decay) * rng.gauss()
            value = min(max(ch.centre + ch.drift + ch.noise_sd * rng.gauss(), ch.low), ch.high)
            if ch.spiky and rng.random() < 1 - math.exp(-dt / _SPIKE_EVERY_S):
                value += rng.uniform(1.5, 3.0)
            values[(ch.device.id, ch.measure.kind)] = value
        faulty: set[str] = set()
        silent: set[str] = set()
        detections: dict[tuple[str, str], float] = {}
        for upset in self._active(plan, elapsed):
            effect = upset.effect
            for device, kind, amount in effect.added:
                values[(device, kind)] += amount
            for device, kind, value in effect.values:
                values[(device, kind)] = value
            for device, kind, confidence in effect.detections:
                detections[(device, kind)] = confidence
            silent.update(effect.silent)
            faulty.update(effect.faulty)
            if upset.kind == "fault":
                faulty.update(upset.devices)
                continue
            for device, kind, peak in upset.peaks:
                base = values[(device, kind)]
                if upset.kind == "release":
                    values[(device, kind)] = base + peak * upset.level * rng.uniform(0.97, 1.03)
                else:
                    values[(device, kind)] = base + (peak - base) * upset.level
        out: list[Reading] = []
        for ch in plan.channels:
            if ch.device.id in silent:
                continue  # a device that lost its link sends nothing at all
            reading: Reading = {"site": plan.site.id, "device": ch.device.id, "kind": ch.measure.kind}
            reading["time"] = stamp
            key = (ch.device.id, ch.measure.kind)
            if ch.device.id in faulty:
                # A detector in fault reports no trustworthy value, only that it is faulty.
                reading["quality"] = "bad"
            elif key in detections:
                # Video analytics report a detection with its confidence, not a measured value.
                reading["confidence"] = detections[key]
                reading["quality"] = "good"
            else:
                value = values[(ch.device.id, ch.measure.kind)]
                if ch.measure.range is not None:  # an instrument saturates at its full scale
                    value = min(max(value, ch.measure.range[0]), ch.measure.range[1])
                reading["value"] = round(value, 3)
                reading["quality"] = "good"
            reading["unit"] = ch.measure.unit
            out.append(reading)
        return out

    def _active(self, plan: _SitePlan, elapsed: float) -> list[Upset]:
        cfg, at = self._cfg, elapsed - plan.offset
        active: list[Upset] = []
        if plan.plume_groups:
            length = cfg.release_ramp_s + cfg.release_hold_s + cfg.release_decay_s
            for k, age in _occurrences(at, cfg.release_first_s, cfg.release_period_s, length):
                active.append(self._release(plan, k, age))
        if plan.vibration:
            for k, age in _occurrences(at, cfg.vibration_first_s, cfg.vibration_period_s, cfg.vibration_s):
                active.append(self._excursion(plan, k, age))
        if plan.detectors:
            for k, age in _occurrences(at, cfg.fault_first_s, cfg.fault_period_s, cfg.fault_s):
                device = random.Random(f"{self._seed}/{plan.site.id}/fault/{k}").choice(plan.detectors)
                active.append(
                    Upset(
                        kind="fault",
                        site=plan.site.id,
                        zone=device.zone,
                        index=k,
                        age_s=age,
                        level=1.0,
                        devices=(device.id,),
                        peaks=(),
                    )
                )
        if plan.scripted:
            active += self._scenarios(plan, elapsed)
        return active

    def _scenarios(self, plan: _SitePlan, elapsed: float) -> list[Upset]:
        # Not staggered by the site's offset: they run at one site only.
        cfg, site = self._cfg, plan.site
        found: list[Upset] = []
        for k, age in _occurrences(
            elapsed, cfg.gas_release_first_s, cfg.gas_release_period_s, cfg.gas_release_s
        ):
            effect = alarm_scenarios.release(age, cfg.gas_release_s)
            level = alarm_scenarios.release_level(age, cfg.gas_release_s)
            found.append(_scripted("gas_release", site, index=k, age=age, level=level, effect=effect))
        for k, age in _occurrences(elapsed, cfg.chatter_first_s, cfg.chatter_period_s, cfg.chatter_s):
            found.append(
                _scripted("chatter", site, index=k, age=age, level=1.0, effect=alarm_scenarios.chatter(age))
            )
        for k, age in _occurrences(elapsed, cfg.power_dip_first_s, cfg.power_dip_period_s, cfg.power_dip_s):
            dip = alarm_scenarios.power_dip(site)
            found.append(_scripted("power_dip", site, index=k, age=age, level=1.0, effect=dip))
        return found

    def _release(self, plan: _SitePlan, k: int, age: float) -> Upset:
        # Each release draws from its own generator, so where it happens does not depend on tick rate.
        rng = random.Random(f"{self._seed}/{plan.site.id}/release/{k}")
        paired = [group for group in plan.plume_groups if len(group) >= 2]
        group = rng.choice(paired or list(plan.plume_groups))
        source = rng.choice(group)
        nearest = sorted(group, key=lambda d: (_metres(source.position, d.position), d.id))
        hit = nearest[: rng.choice((2, 3))]
        scale = 1.0 if plan.site.kind == "plant" else _OFF_SITE_DILUTION
        peaks = {kind: rng.uniform(*bounds) * scale for kind, bounds in _PEAK.items()}
        cfg = self._cfg
        # Up over the ramp, a short plateau, then a slower decay as the leak is isolated and disperses.
        decayed = max(0.0, age - cfg.release_ramp_s - cfg.release_hold_s) / cfg.release_decay_s
        level = min(age / cfg.release_ramp_s, max(0.0, 1.0 - decayed))
        return Upset(
            kind="release",
            site=plan.site.id,
            zone=source.zone,
            index=k,
            age_s=age,
            level=level,
            devices=tuple(d.id for d in hit),
            peaks=tuple(
                (d.id, m.kind, peaks[m.kind] * _DILUTION[i])
                for i, d in enumerate(hit)
                for m in d.measures
                if m.kind in _PEAK
            ),
        )

    def _excursion(self, plan: _SitePlan, k: int, age: float) -> Upset:
        rng = random.Random(f"{self._seed}/{plan.site.id}/vibration/{k}")
        ch = rng.choice(plan.vibration)
        ramp = min(_RAMP_VIBRATION_S, self._cfg.vibration_s / 2)
        level = max(0.0, min(1.0, age / ramp, (self._cfg.vibration_s - age) / ramp))
        peak = rng.uniform(*_ROUGH_VIBRATION)
        return Upset(
            kind="vibration",
            site=plan.site.id,
            zone=ch.device.zone,
            index=k,
            age_s=age,
            level=level,
            devices=(ch.device.id,),
            peaks=((ch.device.id, ch.measure.kind, peak),),
        )


def _plan(site: Site, seed: int, offset: float, *, filmed: Collection[str] = ()) -> _SitePlan:
    channels = tuple(
        _channel(device, measure, random.Random(f"{seed}/{site.id}/{device.id}/{measure.kind}"))
        for device in site.devices
        for measure in device.measures
        if not (device.id in filmed and measure.kind.startswith("video."))
    )
    scripted = alarm_scenarios.has_targets(site)
    groups: dict[str, list[Device]] = {}
    for device in site.devices:
        if any(m.kind in _PEAK for m in device.measures):
            groups.setdefault(device.zone, []).append(device)
    if scripted:
        # A random leak on top of the scripted release would take its zone past the high-high.
        release_zone = {d.zone for d in site.devices if d.id in alarm_scenarios.RELEASE_DEVICES}
        groups = {zone: group for zone, group in groups.items() if zone not in release_zone} or groups
    vibration = [ch for ch in channels if ch.measure.kind == "vibration"]
    pumps = [ch for ch in vibration if "pump" in f"{ch.device.id} {ch.device.description}".lower()]
    return _SitePlan(
        site=site,
        offset=offset,
        channels=channels,
        plume_groups=tuple(tuple(group) for group in groups.values()),
        vibration=tuple(pumps or vibration),
        detectors=tuple(d for d in site.devices if d.type in _FAULT_TYPES),
        scripted=scripted,
    )


def _scripted(kind: UpsetKind, site: Site, *, index: int, age: float, level: float, effect: Effect) -> Upset:
    touched = effect.devices()
    zones = {d.zone for d in site.devices if d.id in touched}
    return Upset(
        kind=kind,
        site=site.id,
        zone=zones.pop() if len(zones) == 1 else "",  # a site-wide upset has no one zone
        index=index,
        age_s=age,
        level=level,
        devices=tuple(sorted(touched)),
        peaks=(),
        effect=effect,
    )


def _channel(device: Device, measure: Measure, rng: random.Random) -> _Channel:
    kind = measure.kind
    if kind in _GAS:
        low, high, centre, drift, noise = _GAS[kind]
        return _Channel(device, measure, centre, drift, noise, low, high)
    if kind.startswith("gas."):
        return _Channel(device, measure, 0.2, 0.1, 0.05, 0.0, 1.0)
    if kind == "flame" or kind.startswith("flame."):
        return _Channel(device, measure, 0.0, 0.0, 0.0, 0.0, 0.0)
    if kind == "video.camera_health":  # the camera's condition: 0, the picture is fine
        return _Channel(device, measure, 0.0, 0.0, 0.0, 0.0, 0.0)
    if kind.startswith("video."):  # camera analytics confidence: a quiet scene scores near 0
        return _Channel(device, measure, 0.02, 0.01, 0.01, 0.0, 0.1)
    if kind == "vibration":
        low, high = _VIBRATION_BAND
        return _Channel(device, measure, rng.uniform(*_VIBRATION_CENTRE), 0.2, 0.08, low, high, spiky=True)
    if device.type == "heat_detector":  # ambient air, whatever range the detector could read
        return _Channel(device, measure, rng.uniform(22.0, 32.0), 1.0, 0.2, -20.0, 60.0)
    if measure.range is not None:
        low, high = measure.range
        span = high - low
        return _Channel(
            device, measure, low + span * rng.uniform(0.4, 0.6), 0.02 * span, 0.002 * span, low, high
        )
    # No range given: a process temperature or pressure of a CDU/VRDS/FCC unit, else a flat line.
    centre = 0.0
    if kind == "temperature":
        centre = rng.uniform(120.0, 360.0)
    elif kind == "pressure":
        centre = rng.uniform(200.0, 1800.0)
    return _Channel(device, measure, centre, 0.01 * abs(centre), 0.002 * abs(centre), -math.inf, math.inf)


def _occurrences(at: float, first: float, period: float, length: float) -> list[tuple[int, float]]:
    """(index, age) of each occurrence of a periodic upset that is active `at` seconds in."""
    if at < first or math.isinf(first):
        return []
    last = int((at - first) // period)
    back = int(length // period) + 1
    ages = ((k, at - first - k * period) for k in range(max(0, last - back), last + 1))
    return [(k, age) for k, age in ages if 0 <= age < length]


def _metres(a: LatLon, b: LatLon) -> float:
    # Equirectangular: exact enough inside one plant, and cheap.
    dx = (b.lon - a.lon) * 111_320.0 * math.cos(math.radians((a.lat + b.lat) / 2))
    dy = (b.lat - a.lat) * 110_540.0
    return math.hypot(dx, dy)


def _require_aware(now: datetime) -> None:
    if now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
