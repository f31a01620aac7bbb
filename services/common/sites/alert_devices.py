"""Alerts as devices: an Alertmanager alert is watched like an instrument, one point per alert.

An alert is not in the site files (it comes and goes with the monitored infrastructure), yet its
alarm must be one alarm per alert: the device of its observations is `am-<fingerprint>`
(Alertmanager's fingerprint is 16 hexadecimal digits, the same for every notification of one
alert). Ingest accepts these devices at a site the key may post for; the alarm engine places them
at their site with device type `alert` and no zone, and alarm rules watch them by kind, under
`infra.` (the shipped `infra.alert` rule raises at 1, firing, and clears at 0, resolved).
"""

from __future__ import annotations

import re

PREFIX = "am-"
DEVICE_TYPE = "alert"
KIND_PREFIX = "infra."
_DEVICE = re.compile(r"^am-[0-9a-f]{16}\Z")


def alert_device(fingerprint: str) -> str:
    return PREFIX + fingerprint


def is_alert_device(device: str) -> bool:
    return _DEVICE.match(device) is not None


def is_alert_kind(kind: str) -> bool:
    return kind.startswith(KIND_PREFIX)
