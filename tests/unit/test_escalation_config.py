"""The `escalation:` section: defaults, and a wrong key or value stopping start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.escalation.config import EscalationConfig
from services.escalation.domain.retry import STANDARD_SCHEDULE_S
from services.hub.registry import REGISTRY


def test_the_defaults_are_the_standard_schedule_and_the_lifecycle_changes() -> None:
    config = EscalationConfig()
    assert tuple(config.retry_schedule_s) == STANDARD_SCHEDULE_S
    assert "opened" in config.changes and "joined" not in config.changes


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("escalation:\n  changes: [opened, exploded]\n", "changes"),
        ("escalation:\n  retry_schedule_s: [5, -1]\n", "retry_schedule_s"),
        ("escalation:\n  total_timeout_s: 0\n", "total_timeout_s"),
        ("escalation:\n  colour: red\n", ""),
    ],
)
def test_a_wrong_escalation_key_stops_start_up_naming_file_line_and_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("sites: []\n" + text)
    with pytest.raises(ConfigError) as refused:
        REGISTRY.load_config(path, env={})
    message = str(refused.value)
    assert message.startswith(f"{path}:") and f"escalation.{key}" in message
