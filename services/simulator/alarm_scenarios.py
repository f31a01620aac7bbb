"""The demo's alarm scenarios: three scripted upsets at the demo refinery that exercise what an
alarm system is judged on (ISA-18.2), beside the plant's random upsets.

- A gas release in the FCC 2 zone: two of the three LEL detectors of the zone's 2oo3 voting group
  rise past the 20 %LEL high alarm (below the 40 %LEL high-high), the third goes silent (stale:
  its comm-loss alarm, and the group degrades to 1oo2), and the zone's camera sees the vapour
  cloud (`video.smoke` detections, confident enough for the camera rule). The demo films that
  camera instead (services/hub/demo_camera.py): its detections come from pictures of the release.
- A chattering pump: the vibration of crude charge pump P-101A crosses its high set-point back and
  forth, each swing long enough for the rule's on- and off-delays, so it raises and clears more
  than 5 times in 5 minutes.
- A power dip: the site's field instruments lose power for a few seconds and report a fault
  (quality bad) when they come back, long enough for the fault alarms' on-delay: more than 10
  alarms within seconds, a flood.

The targets are the demo site's own devices (sites/ulsan-demo.yaml) and the timings follow the
shipped rules (sites/alarms/ulsan-demo.yaml); a site without those devices gets none of this.
Pure: what a scenario does at a tick follows from the seconds since the first tick alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.sites.model import Site

SITE = "ulsan-refinery"
# The 2oo3 group fcc2-lel-2oo3: two rise, one goes silent.
RELEASE_RISING: tuple[tuple[str, float], ...] = (("gd-fcc2-201", 32.0), ("gd-fcc2-203", 27.0))  # %LEL peaks
RELEASE_SILENT = "gd-fcc2-204"
RELEASE_CAMERA = "cam-fcc2-201"
RELEASE_KIND = "gas.lel"
CAMERA_KIND = "video.smoke"
RELEASE_RAMP_S = 20.0
RELEASE_FADE_S = 30.0
SILENT_AFTER_S = 10.0  # the third detector stops answering this long into the release
# Every device the release scripts.
RELEASE_DEVICES = frozenset({*(d for d, _ in RELEASE_RISING), RELEASE_SILENT, RELEASE_CAMERA})
CAMERA_FROM_LEVEL = 0.3  # the cloud is visible once the release is this far along
# Rule vibration-high: 2.8 mm/s, deadband 0.2, on-delay 10 s, off-delay 30 s. A swing of 25 s
# above and 35 s well below raises it (after 10 s) and clears it (30 s after the swing down)
# once a minute.
CHATTER_DEVICE = "vt-p101a"
CHATTER_KIND = "vibration"
CHATTER_CYCLE_S = 60.0
CHATTER_HIGH_S = 25.0
CHATTER_HIGH = 3.4  # mm/s: past 2.8, short of the 4.5 high-high
CHATTER_LOW = 2.2  # below 2.8 - 0.2
# What loses power in a dip: the detectors whose faults are alarmed (fault on-delay 5 s).
DIP_TYPES = frozenset({"gas_detector", "flame_detector", "heat_detector"})


@dataclass(frozen=True, slots=True)
class Effect:
    """What the scenarios do to one site's readings at one tick."""

    values: tuple[tuple[str, str, float], ...] = ()  # (device, kind, value): replaces the reading
    added: tuple[tuple[str, str, float], ...] = ()  # (device, kind, amount): added to the reading
    detections: tuple[tuple[str, str, float], ...] = ()  # (device, kind, confidence)
    silent: tuple[str, ...] = ()  # devices that send nothing
    faulty: tuple[str, ...] = ()  # devices that report quality bad

    def devices(self) -> set[str]:
        """Every device the effect touches."""
        touched = {device for device, _, _ in (*self.values, *self.added, *self.detections)}
        return touched | set(self.silent) | set(self.faulty)


NO_EFFECT = Effect()


def has_targets(site: Site) -> bool:
    """Whether `site` is the demo refinery with the devices the scenarios script."""
    ids = {d.id for d in site.devices}
    needed = RELEASE_DEVICES | {CHATTER_DEVICE}
    return site.id == SITE and needed <= ids


def release_level(age_s: float, length_s: float) -> float:
    """0 to 1: up over the ramp, held, down over the fade at the end."""
    return max(0.0, min(1.0, age_s / RELEASE_RAMP_S, (length_s - age_s) / RELEASE_FADE_S))


def release(age_s: float, length_s: float) -> Effect:
    level = release_level(age_s, length_s)
    detections: tuple[tuple[str, str, float], ...] = ()
    if level >= CAMERA_FROM_LEVEL:
        # Video analytics grow surer as the cloud thickens: 0.6 to 0.9, past the rule's 0.5.
        detections = ((RELEASE_CAMERA, CAMERA_KIND, round(0.6 + 0.3 * level, 3)),)
    return Effect(
        added=tuple((device, RELEASE_KIND, peak * level) for device, peak in RELEASE_RISING),
        detections=detections,
        silent=(RELEASE_SILENT,) if age_s >= SILENT_AFTER_S else (),
    )


def chatter(age_s: float) -> Effect:
    phase = age_s % CHATTER_CYCLE_S
    # A slight wobble so the trace looks like a machine, never near the set-point's deadband.
    wobble = 0.05 * math.sin(age_s)
    value = (CHATTER_HIGH if phase < CHATTER_HIGH_S else CHATTER_LOW) + wobble
    return Effect(values=((CHATTER_DEVICE, CHATTER_KIND, value),))


def power_dip(site: Site) -> Effect:
    return Effect(faulty=tuple(d.id for d in site.devices if d.type in DIP_TYPES))
