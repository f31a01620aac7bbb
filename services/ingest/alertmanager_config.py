"""The `ingest.alertmanager:` section: how an Alertmanager alert's labels name its site, zone and
kind.

```yaml
ingest:
  alertmanager:
    site_label: site                 # the label naming the site
    sites: {refinery: ulsan-refinery}  # label values that are not site ids
    zone_label: zone
    kind_label: alertname
    kinds: {DcsServerDown: infra.dcs_server, ExporterDown: infra.exporter}
    kind: infra.alert                # the kind of any other alert
```

Kinds are under `infra.`: the alarm engine places alert devices by that (see
services/common/sites/alert_devices.py). Checked when the file is loaded.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.sites.alert_devices import KIND_PREFIX, is_alert_kind
from services.common.types import Kind, Slug

LabelName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]


class AlertmanagerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The label whose value is the site (or a key of `sites`).
    site_label: LabelName = "site"
    # Label values -> site ids, for monitoring that names sites its own way.
    sites: dict[str, Slug] = {}
    # The site of alerts without the site label; None: such an alert is refused.
    site: Slug | None = None
    # The label whose value is the zone (or a key of `zones`); an alert without it has no zone.
    zone_label: LabelName = "zone"
    zones: dict[str, Slug] = {}
    # The label whose value picks the kind in `kinds`; other values get `kind`.
    kind_label: LabelName = "alertname"
    kinds: dict[str, Kind] = {}
    kind: Kind = "infra.alert"

    def __post_init__(self) -> None:
        for name, kind in [("kind", self.kind), *((f"kinds.{k}", v) for k, v in self.kinds.items())]:
            if not is_alert_kind(kind):
                raise ValueError(
                    f"{name}: '{kind}' is not an infrastructure kind (one starting with '{KIND_PREFIX}')"
                )
