"""The service kernel: what every service declares and what the hub gives it (see DESIGN.md)."""

from __future__ import annotations

from services.common.kernel.config import compose_config
from services.common.kernel.service import (
    KernelComponent,
    PanelRow,
    Service,
    ServiceContext,
    ServiceInstance,
)

__all__ = [
    "KernelComponent",
    "PanelRow",
    "Service",
    "ServiceContext",
    "ServiceInstance",
    "compose_config",
]
