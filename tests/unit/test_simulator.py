"""The simulated plant: deterministic, plausible at rest, and upsets that cross the alarm set-points."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.common.sites import (
    Device,
    DeviceType,
    LatLon,
    Measure,
    Site,
    SiteRegistry,
    SitesFile,
    Tenant,
    Zone,
)
from services.simulator.plant import PlantSimulator, Reading, ScenarioConfig

DEMO = Path(__file__).resolve().parents[2] / "sites" / "ulsan-demo.yaml"
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
QUIET = ScenarioConfig(release_first_s=math.inf, vibration_first_s=math.inf, fault_first_s=math.inf)
# The shipped rules' set-points (sites/alarms/ulsan-demo.yaml) a random leak must cross (high)
# and must not reach (high-high).
HIGH = {"gas.h2s": 10.0, "gas.lel": 20.0}
HIGH_HIGH = {"gas.h2s": 20.0, "gas.lel": 40.0}
# Pump vibration (ISO 10816-3 group 2): the high alarm, its deadband, and the high-high.
VIBRATION_HIGH, VIBRATION_DEADBAND, VIBRATION_HIGH_HIGH = 2.8, 0.2, 4.5


def _device(
    id_: str, type_: DeviceType, lat: float, lon: float, *measures: tuple[str, str], description: str = ""
) -> Device:
    return Device(
        id=id_,
        zone="cdu-1",
        type=type_,
        position=LatLon(lat=lat, lon=lon),
        description=description or None,
        # Gas detectors carry their instrument range; process transmitters here have none, to
        # exercise the defaults.
        measures=tuple(
            Measure(kind=k, unit=u, range=(0.0, 100.0) if k.startswith("gas") else None) for k, u in measures
        ),
    )


def _registry() -> SiteRegistry:
    zone = Zone(
        id="cdu-1",
        name="Crude Distillation Unit 1",
        hazard="flammable_toxic",
        polygon=((35.4771, 129.3502), (35.4779, 129.3515), (35.4770, 129.3520)),
    )
    devices = (
        _device("gd-101", "gas_detector", 35.47740, 129.35040, ("gas.lel", "%LEL"), ("gas.h2s", "ppm")),
        _device("gd-102", "gas_detector", 35.47745, 129.35050, ("gas.lel", "%LEL"), ("gas.h2s", "ppm")),
        _device("gd-103", "gas_detector", 35.47790, 129.35140, ("gas.lel", "%LEL"), ("gas.co", "ppm")),
        _device("gd-104", "gas_detector", 35.47760, 129.35100, ("gas.o2", "%vol")),
        _device("fd-101", "flame_detector", 35.47750, 129.35070, ("flame", "1")),
        _device("hd-101", "heat_detector", 35.47755, 129.35080, ("temperature", "Cel")),
        _device("tt-101", "temperature", 35.47811, 129.35090, ("temperature", "Cel")),
        _device("pt-101", "pressure", 35.47815, 129.35094, ("pressure", "kPa")),
        _device(
            "vt-p101a", "vibration", 35.47751, 129.35025, ("vibration", "mm/s"), description="Pump P-101A"
        ),
    )
    site = Site(
        id="acme-refinery",
        tenant="acme",
        name="Acme Refinery",
        kind="plant",
        timezone="Asia/Seoul",
        location=LatLon(lat=35.4768, lon=129.3529),
        zones=(zone,),
        devices=devices,
    )
    doc = SitesFile(version=1, tenants=(Tenant(id="acme", name="Acme"),), sites=(site,))
    return SiteRegistry.from_files([("test.yaml", doc, None)])


def _run(sim: PlantSimulator, seconds: int, step_s: float = 1.0) -> list[tuple[float, Reading]]:
    """(elapsed s, reading) for every reading of every site over `seconds`."""
    out: list[tuple[float, Reading]] = []
    for i in range(int(seconds / step_s) + 1):
        for readings in sim.tick(T0 + timedelta(seconds=i * step_s)).values():
            out.extend((i * step_s, r) for r in readings)
    return out


def _value(reading: Reading) -> float:
    value = reading["value"]
    assert isinstance(value, float)
    return value


def test_same_seed_and_times_give_the_same_readings() -> None:
    registry = _registry()
    assert _run(PlantSimulator(registry, seed=3), 300) == _run(PlantSimulator(registry, seed=3), 300)
    assert _run(PlantSimulator(registry, seed=3), 30) != _run(PlantSimulator(registry, seed=4), 30)


def test_one_reading_per_measure_with_its_unit_time_and_quality() -> None:
    registry = _registry()
    now = T0.astimezone(timezone(timedelta(hours=9)))  # local time in, UTC out
    readings = PlantSimulator(registry).tick(now)["acme-refinery"]
    expected = {(d.id, m.kind): m.unit for d in registry.sites[0].devices for m in d.measures}
    assert {(r["device"], r["kind"]): r["unit"] for r in readings} == expected
    assert len(readings) == len(expected)
    for reading in readings:
        assert reading["site"] == "acme-refinery"
        assert reading["time"] == "2025-06-02T09:00:00+00:00"
        assert reading["quality"] == "good"
        assert "id" not in reading


def test_the_demo_site_file_gets_readings_with_its_units() -> None:
    if not DEMO.exists():
        pytest.skip("sites/ulsan-demo.yaml not present")
    registry = SiteRegistry.load([DEMO])
    out = PlantSimulator(registry).tick(T0)
    assert set(out) == {site.id for site in registry.sites}
    for site_id, readings in out.items():
        for r in readings:
            measure = registry.measure(site_id, str(r["device"]), str(r["kind"]))
            assert measure is not None
            assert r["unit"] == measure.unit


def test_a_plant_at_rest_stays_in_plausible_ranges() -> None:
    registry = _registry()
    by_kind: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, r in _run(PlantSimulator(registry, scenarios=QUIET), 1800, step_s=2.0):
        assert r["quality"] == "good"
        by_kind[(str(r["device"]), str(r["kind"]))].append(_value(r))
    bands = {"gas.h2s": (0.0, 1.0), "gas.co": (0.0, 5.0), "gas.lel": (0.0, 2.0), "gas.o2": (20.7, 20.95)}
    for (device, kind), values in by_kind.items():
        low, high = bands.get(kind, (-math.inf, math.inf))
        assert low <= min(values) <= max(values) <= high, (device, kind)
        if kind == "flame":
            assert set(values) == {0.0}
        if kind == "vibration":
            # A healthy pump runs below its high alarm (ISO 10816-3 zones A/B) with room for the
            # deadband; a harmless spike now and then lasts one reading, never an alarm's on-delay.
            assert min(values) > 0.0
            assert sorted(values)[len(values) // 2] < VIBRATION_HIGH - VIBRATION_DEADBAND
            over = [i for i, v in enumerate(values) if v >= VIBRATION_HIGH]
            assert all(i + 1 not in over for i in over)
        if kind in {"temperature", "pressure"}:
            # Drifts slowly around its set value: wanders, but not by half of it.
            centre = sorted(values)[len(values) // 2]
            assert max(values) - min(values) < 0.5 * abs(centre), (device, kind)
    heat = by_kind[("hd-101", "temperature")]
    assert 10.0 < min(heat) <= max(heat) < 45.0  # a heat detector reads ambient air


def test_a_leak_crosses_the_high_alarms_on_neighbouring_detectors_but_not_the_high_highs() -> None:
    registry = _registry()
    zone_of = {d.id: d.zone for d in registry.sites[0].devices}
    cfg = ScenarioConfig(release_first_s=20.0, vibration_first_s=math.inf, fault_first_s=math.inf)
    sim = PlantSimulator(registry, scenarios=cfg)
    readings = _run(sim, 240)
    peaks: dict[tuple[str, str], float] = defaultdict(float)
    for t, r in readings:
        if r["kind"] in {"gas.h2s", "gas.lel"}:
            value = _value(r)
            peaks[(str(r["device"]), str(r["kind"]))] = max(peaks[(str(r["device"]), str(r["kind"]))], value)
            if t < 20.0:
                assert value <= 2.0  # nothing before the release starts
    over = {device for (device, kind), peak in peaks.items() if peak >= HIGH[kind]}
    # The source and its nearest neighbour: what 2ooN voting could confirm.
    assert len(over) >= 2
    assert all(peak < HIGH_HIGH[kind] for (_, kind), peak in peaks.items())
    assert len({zone_of[d] for d in over}) == 1
    # Ramps over ~30 s: not yet at alarm level 5 s in, and back to normal after the decay.
    early = [_value(r) for t, r in readings if t == 25.0 and r["kind"] == "gas.lel"]
    assert max(early) < HIGH["gas.lel"]
    late = [_value(r) for t, r in readings if t >= 185.0 and r["kind"] in {"gas.h2s", "gas.lel"}]
    assert max(late) <= 2.0
    upsets = sim.upsets(T0 + timedelta(seconds=60))
    assert [u.kind for u in upsets] == ["release"]
    # The detectors it reaches: those nearest the source past the alarm, the farthest maybe not.
    assert over <= set(upsets[0].devices)


def test_a_rough_pump_runs_past_its_high_alarm_but_short_of_the_high_high() -> None:
    sim = PlantSimulator(
        _registry(),
        scenarios=ScenarioConfig(release_first_s=math.inf, vibration_first_s=10.0, fault_first_s=math.inf),
    )
    values = [(t, _value(r)) for t, r in _run(sim, 150) if r["kind"] == "vibration"]
    # ISO 10816-3 zone C for most of its 90 s, long past the high alarm's 10 s on-delay ...
    rough = [t for t, v in values if v >= VIBRATION_HIGH]
    assert len(rough) >= 60 and all(10.0 <= t < 100.0 for t in rough)
    # ... never zone D (the high-high), and back below the high's deadband after.
    assert max(v for _, v in values) < VIBRATION_HIGH_HIGH
    assert max(v for t, v in values if t >= 100.0) < VIBRATION_HIGH - VIBRATION_DEADBAND


def test_a_detector_fault_reports_bad_quality_for_a_few_ticks_without_a_value() -> None:
    cfg = ScenarioConfig(release_first_s=math.inf, fault_first_s=30.0, fault_s=5.0)
    bad = [(t, r) for t, r in _run(PlantSimulator(_registry(), scenarios=cfg), 60) if r["quality"] == "bad"]
    assert {t for t, _ in bad} == {30.0, 31.0, 32.0, 33.0, 34.0}
    assert len({r["device"] for _, r in bad}) == 1
    assert all("value" not in r for _, r in bad)


def test_where_an_upset_happens_does_not_depend_on_the_tick_rate() -> None:
    registry = _registry()
    cfg = ScenarioConfig(release_first_s=20.0)
    fast, slow = PlantSimulator(registry, scenarios=cfg), PlantSimulator(registry, scenarios=cfg)
    for i in range(61):
        fast.tick(T0 + timedelta(seconds=i))
    slow.tick(T0)
    slow.tick(T0 + timedelta(seconds=60))
    assert fast.upsets(T0 + timedelta(seconds=60)) == slow.upsets(T0 + timedelta(seconds=60))


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PlantSimulator(_registry()).tick(datetime(2025, 6, 2, 9, 0))


def test_scenario_periods_must_be_positive() -> None:
    with pytest.raises(ValueError, match="release_period_s"):
        ScenarioConfig(release_period_s=0.0)
