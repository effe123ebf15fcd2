"""Every command documents itself with an example."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from cli.main import app
from tests.support import run_cli


def leaf_commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command under a (typer) command group, as its words."""
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):  # a group of commands
            found += leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = leaf_commands(typer.main.get_command(app))


def test_the_store_commands_are_all_found() -> None:
    assert {
        ("init",),
        ("ingest",),
        ("correct",),
        ("retract",),
        ("events",),
        ("patients",),
        ("verify",),
        ("info",),
    } <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
