"""The `ingest.mqtt.sparkplug:` section: which Sparkplug B groups the bridge reads, and how
edge nodes, devices and metrics map to the site registry's sites, devices and kinds.

```yaml
ingest:
  mqtt:
    url: mqtt://broker:1883
    sparkplug:
      groups:
        - group: cdu                        # spBv1.0/cdu/...
          site: ulsan-refinery
          devices: {"edge-1/det-101": gd-cdu1-101, "edge-1": gw-cdu1}
          metrics: {"Gas/H2S": gas.h2s, "Gas/LEL": gas.lel}
```
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.settings import PositiveFloat

_LEVEL = r"^[^/+#]+$"  # a Sparkplug id is one topic level
SparkplugId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_LEVEL)]


class SparkplugGroup(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    group: SparkplugId
    site: str
    # None: the site's owner in the registry; given, a site of another tenant is refused.
    tenant: str | None = None
    # "<edge node>" (its own metrics) or "<edge node>/<device>" -> the registry's device id.
    # Unlisted: the Sparkplug device id (or the edge node id) as it is.
    devices: dict[str, str] = {}
    # Metric name -> kind. Metrics not listed are not readings (bdSeq, Node Control/...): skipped.
    metrics: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError(f"group '{self.group}': metrics maps no metric name to a kind")


class SparkplugConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    groups: list[SparkplugGroup]
    # At most one rebirth request per edge node within this many seconds: a node that keeps
    # skipping sequence numbers must not be flooded with commands.
    rebirth_interval_s: PositiveFloat = 5.0

    def __post_init__(self) -> None:
        names = [g.group for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("groups: a Sparkplug group is listed twice")
        if not names:
            raise ValueError("groups: list at least one Sparkplug group")
