"""The command line explains itself: a version, help for every option, the roles in the README."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from importlib import metadata

import pytest

from services.common.auth.principal import ROLES, Principal
from services.hub.cli import _parser, main
from services.hub.registry import REGISTRY
from tests.conftest import REPO


def _parsers(
    parser: argparse.ArgumentParser, path: str = "safetyhub"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _options() -> Iterator[tuple[str, argparse.Action]]:
    for path, parser in _parsers(_parser()):
        for action in parser._actions:
            yield path, action
            if isinstance(action, argparse._SubParsersAction):
                # The one-line help of each subcommand, as `--help` lists them.
                yield from ((f"{path} {a.dest}", a) for a in action._choices_actions)


def test_every_command_and_option_has_help() -> None:
    options = list(_options())
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, action in options
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]

    assert len(options) > 40  # the walk reached every subcommand
    assert missing == []


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"safetyhub {metadata.version('safetyhub')}"


def _readme_roles() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Roles", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `([a-z]+)` \| (.+) \|$", section, flags=re.MULTILINE))


def _cli_roles() -> list[str]:
    create = dict(_parsers(_parser()))["safetyhub keys create"]
    (role,) = [a for a in create._actions if "--role" in a.option_strings]
    assert role.choices is not None
    return list(role.choices)


def test_the_readme_role_table_lists_every_role_the_cli_offers() -> None:
    assert list(_readme_roles()) == _cli_roles()
    assert _cli_roles() == list(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_the_readme_says_what_each_role_may_do_today(role: str) -> None:
    said = _readme_roles()[role]
    principal = Principal(key_id="k", tenant="t", role=role, sites=None)

    for permission in REGISTRY.permissions():  # "post observations": the README says "post"
        verb = permission.summary.split()[0]
        assert (verb in said) == principal.may(permission), (permission.verb, said)


def test_every_registered_service_can_be_run_alone_and_the_readme_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    services = [service.name for service in REGISTRY.services]
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = capsys.readouterr().out
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (row,) = re.findall(r"^\| `safetyhub run ([a-z|\\]+) .*$", text, flags=re.MULTILINE)

    assert "alarms" in services
    choices = re.search(r"\{(.+?)\}", shown)
    assert choices is not None and choices[1].split(",") == services
    assert row.replace("\\", "").split("|") == services
