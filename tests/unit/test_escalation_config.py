"""The `escalation:` section: defaults, and a wrong key or value stopping start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.escalation.app import ESCALATION
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
        ("escalation:\n  cap:\n    sender: two words\n", "cap"),
        ("escalation:\n  cap:\n    sender: a@b.org\n    web: not-a-url\n", "cap"),
        ("escalation:\n  cap:\n    name: no sender\n", "cap"),
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


def test_a_cap_sender_is_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "sites: []\nescalation:\n  cap:\n    sender: safetyhub@plant.example.org\n    status: Exercise\n"
    )
    config, _ = REGISTRY.load_config(path, env={})
    section = ESCALATION.section(config)
    assert section.cap.sender == "safetyhub@plant.example.org" and section.cap.status == "Exercise"
    assert EscalationConfig().cap.sender  # a hub without the key still sends valid alerts
