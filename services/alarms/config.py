"""The `alarms:` section of the hub's config."""

from __future__ import annotations

import msgspec

from services.common.settings import Positive, PositiveFloat


class AlarmsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Alarm rule files or globs, relative to the config file (or to the working directory without
    # one), validated together against the site registry. Unset: the `alarms/` folder beside each
    # site path (`sites/*.yaml` -> `sites/alarms/*.yaml`). They are checked for changes every
    # `sites_reload_s` and whenever the site registry reloads; a refused change keeps the last
    # valid rules.
    rules: list[str] | None = None
    # One unit of work (one PostgreSQL transaction) evaluates at most batch_max bus messages.
    batch_max: Positive = 2_000
    batch_max_kb: Positive = 2_048
    batch_wait_ms: Positive = 10
    max_ack_pending: Positive = 10_000
    ack_wait_s: PositiveFloat = 30.0
    # How often the timer scheduler looks for due timers: a timer fires at most this late
    # (plus the time to commit), also after a restart.
    timer_poll_ms: Positive = 200
