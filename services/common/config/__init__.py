"""Strict YAML config loading shared by every service."""

from __future__ import annotations

from services.common.config.yaml_loader import (
    LineMap,
    format_path,
    load_yaml_file,
    load_yaml_file_with_lines,
    load_yaml_text,
    load_yaml_text_with_lines,
)

__all__ = [
    "LineMap",
    "format_path",
    "load_yaml_file",
    "load_yaml_file_with_lines",
    "load_yaml_text",
    "load_yaml_text_with_lines",
]
