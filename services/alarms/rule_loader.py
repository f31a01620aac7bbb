"""Load the alarm rule files into one validated, immutable RuleSet, or refuse them all.

It has the shape of `SiteRegistry.load`, so a reloader built like the site reloader serves rules
too: `load_rule_set(paths, registry)` returns a RuleSet or raises ConfigError naming file, line and
key, and the caller keeps the last valid set. Rules are checked against a site registry, so they
are loaded again (and may be refused) whenever the registry changes as well as when they do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from services.alarms.domain.model import AlarmClass
from services.alarms.domain.rules import ClassLimits, RuleIndex, RuleSet
from services.alarms.rules_file import LoadedRulesFile, RulesFile, class_limits_of, to_group, to_rule
from services.alarms.rules_validate import validate_rule_files
from services.common.config.yaml_loader import load_yaml_file_with_lines
from services.common.sites.registry import SiteRegistry


def load_rule_set(paths: Sequence[Path], registry: SiteRegistry) -> RuleSet:
    """Reads and validates every rule file against `registry` (blocking: start-up or a thread).

    Raises ConfigError with file, line and key on the first problem.
    """
    files: list[LoadedRulesFile] = []
    for path in paths:
        doc, lines = load_yaml_file_with_lines(path, RulesFile)
        files.append((str(path), doc, lines))
    return rule_set_from_files(files, registry)


def rule_set_from_files(files: Sequence[LoadedRulesFile], registry: SiteRegistry) -> RuleSet:
    """Validates already parsed files as one set against `registry` and builds the RuleSet."""
    validate_rule_files(files, registry)
    rules = [to_rule(spec) for _, doc, _ in files for spec in doc.rules]
    groups = tuple(to_group(spec) for _, doc, _ in files for spec in doc.voting_groups)
    limits: dict[AlarmClass, timedelta] = {}
    for _, doc, _ in files:
        if doc.class_limits is not None:
            limits.update(class_limits_of(doc.class_limits))
    return RuleSet(RuleIndex(rules), groups, ClassLimits.with_overrides(limits))
