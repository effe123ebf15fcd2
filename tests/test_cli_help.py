"""Every command documents itself with an example."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from cli.main import app, only_command
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


def _command(words: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return command


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_example_is_shown_on_lines_of_its_own(
    command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # typer dedents the text after the first paragraph again: an indented example that
    # follows a one-paragraph description lost its indentation and ran into one paragraph
    monkeypatch.setenv("COLUMNS", "400")
    doc = _command(command).help.split("Example:", 1)[1]
    examples = [line.strip() for line in doc.splitlines() if line.strip().startswith("timeline ")]
    assert examples
    shown = {line.strip(" │") for line in run_cli(*command, "--help").stdout.splitlines()}
    assert [e for e in examples if e not in shown] == []


GROUPS: list[tuple[str, ...]] = [(), ("rules",), ("cohort",)]


def _example_lines(words: tuple[str, ...]) -> list[str]:
    """The lines of the example block of a command's (or group's) help text."""
    command = _command(words)
    text = f"{command.help or ''}\n{command.epilog or ''}".split("Example", 1)[1]
    block = text.split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_every_example_line_fits_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # a line that wraps is broken when copied: `... --rule crp_normal` and `--json` below it
    monkeypatch.setenv("COLUMNS", "80")
    wrapped = []
    for words in [*GROUPS, *COMMANDS]:
        shown = {line.strip(" │") for line in run_cli(*words, "--help").stdout.splitlines()}
        wrapped += [line for line in _example_lines(words) if line not in shown]
    assert wrapped == []


def test_no_flag_is_shown_with_a_value_placeholder() -> None:
    # typer 0.29 shows `--json <bool>` and `--help -h <bool>`, as if they took `true`
    shown = [
        " ".join(("timeline", *w)) for w in [*GROUPS, *COMMANDS] if "<bool>" in run_cli(*w, "--help").stdout
    ]
    assert shown == []


def test_every_option_that_takes_a_value_names_it() -> None:
    # a metavar (--at DATE, --store FILE) rather than typer's type placeholder (<str>, <path>)
    placeholder = re.compile(r"<(?!bool>)[\w\[\]|]+>")  # a flag's <bool>: the test above
    unnamed = []
    for words in [*GROUPS, *COMMANDS]:
        for line in run_cli(*words, "--help").stdout.splitlines():
            row = line.strip(" │*")
            if row.startswith("--") and placeholder.search(row):
                unnamed.append(f"{' '.join(('timeline', *words))} {row.split()[0]}")
    assert unnamed == []


def test_no_argument_is_shown_with_its_type_beside_its_name() -> None:
    # typer 0.29 shows `PATIENT <str>` and `FILE <path>` in the arguments panel
    panels, shown = 0, []
    for words in COMMANDS:
        help_text = run_cli(*words, "--help").stdout
        if "─ Arguments ─" not in help_text:
            continue
        panels += 1
        panel = help_text.split("─ Arguments ─", 1)[1].split("╰", 1)[0]
        shown += [
            f"{' '.join(words)}: {line.strip(' │*')}"
            for line in panel.splitlines()
            if re.search(r"<[\w\[\]|]+>", line)
        ]
    assert panels > 10
    assert shown == []


def test_version_prints_the_versions_of_timeline_duckdb_and_python() -> None:
    import platform

    import duckdb

    from timeline import __version__

    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        f"timeline {__version__} (DuckDB {duckdb.__version__}, Python {platform.python_version()})"
    )


@pytest.mark.parametrize("group", GROUPS, ids=["timeline", "rules", "cohort"])
def test_every_command_group_has_help_with_an_example(group: tuple[str, ...]) -> None:
    result = run_cli(*group, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout


def test_long_steps_show_a_spinner_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from contextlib import nullcontext

    from cli.output import working

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(working("verifying"), nullcontext)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not isinstance(working("verifying"), nullcontext)


@pytest.mark.parametrize(
    "command",
    [("state",), ("explain",), ("events",), ("history",), ("patients",), ("export",), ("cohort", "run")],
    ids=" ".join,
)
def test_no_example_reads_the_record_as_known_at_a_calendar_date(command: tuple[str, ...]) -> None:
    """Helper 59: `events P001 --as-known-at 2024-05-01` gave nothing on any store made later
    (it is a recording time): an example that runs on a fresh store names a seq."""
    shown = [line for line in _example_lines(command) if "--as-known-at" in line]
    assert [line for line in shown if not re.search(r"--as-known-at seq:\d+", line)] == []


TOP_LEVEL = sorted(name for (name, *rest) in COMMANDS if not rest)


def test_a_command_line_naming_a_command_builds_that_command_alone() -> None:
    built = only_command(app, ["state", "P001", "--at", "2008-02-10"])
    assert [c.callback.__name__ for c in built.registered_commands if c.callback] == ["state"]
    assert built.registered_groups == []
    assert len(app.registered_commands) == len(TOP_LEVEL)  # the app itself is left whole


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["rules", "list"], ["stat"], ["P001"]])
def test_a_command_line_naming_no_command_builds_every_command(args: list[str]) -> None:
    assert only_command(app, args) is app


@pytest.mark.parametrize("command", TOP_LEVEL)
@pytest.mark.parametrize("rest", [["--help"], ["--no-such-option"]], ids=["help", "unknown-option"])
def test_a_command_built_alone_helps_and_refuses_as_among_the_others(command: str, rest: list[str]) -> None:
    alone = CliRunner().invoke(only_command(app, [command]), [command, *rest])
    among = CliRunner().invoke(app, [command, *rest])
    assert (alone.exit_code, alone.output) == (among.exit_code, among.output)
