"""cli.fast: a plain `state` or `explain` command line, parsed without typer, gives cli.show's
function exactly the arguments typer gives it; any other goes to typer."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import show
from cli.fast import plain_arguments, plain_command
from cli.main import app, only_command
from tests.support import output_env, run_cli
from timeline.engine.evaluate import Session


def through_typer(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> tuple[int, dict[str, Any] | None]:
    """typer's exit code for ``args``, and the arguments it gave cli.show's function (None if
    it called none)."""
    seen: dict[str, Any] = {}

    def record(name: str) -> Any:
        signature = inspect.signature(getattr(show, name))

        def called(*a: Any, **k: Any) -> None:
            seen.update(signature.bind(*a, **k).arguments)

        return called

    monkeypatch.setattr(show, "state", record("state"))
    monkeypatch.setattr(show, "explain", record("explain"))
    done = CliRunner().invoke(only_command(app, args), args)
    return done.exit_code, (seen or None)


PLAIN = [
    ["state", "P001", "--at", "2008-06-01"],
    ["state", "P001", "--at=2008-06-01", "--json"],
    ["state", "--at", "2008-06-01", "P 001", "--store", "s.duckdb", "--rule", "a", "--rule=b"],
    ["state", "P001", "--at", "2008-06-01", "-s", "x/y.duckdb", "--wait", "2.5", "--as-known-at", "seq:4"],
    ["state", "P001", "--at", "", "--rules", "r1", "--rules=r2", "--param", "x=1", "--param", "a.b=2"],
    ["state", "P001", "--at", "2008-06-01", "--wait", "3", "--json", "--json"],
    ["explain", "P001", "crp_normal", "--at", "2008-06-01"],
    ["explain", "P001", "--json", "crp_normal", "--at", "2008-06-01", "--store=s.duckdb"],
    ["explain", "P001", "", "--at", "2008-06-01", "--wait=0", "--rules", "d", "--param", "x=y"],
]


@pytest.mark.parametrize("args", PLAIN, ids=[" ".join(a) for a in PLAIN])
def test_a_plain_command_line_gives_the_arguments_typer_gives(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    found = plain_arguments(args)
    assert found is not None
    assert through_typer(monkeypatch, args) == (0, found[1])


NOT_PLAIN = [
    [],
    ["state"],
    ["state", "--help"],
    ["state", "P001", "--at", "2008-06-01", "-h"],
    ["state", "P001"],  # --at missing
    ["state", " ", "--at", "2008-06-01"],  # an empty patient
    ["state", "P001", "extra", "--at", "2008-06-01"],
    ["explain", "P001", "--at", "2008-06-01"],  # the rule missing
    ["state", "P001", "--at", "2008-06-01", "--at", "2008-06-02"],
    ["state", "P001", "--at", "-1"],  # a value like an option
    ["state", "P001", "--at"],
    ["state", "P001", "--at", "2008-06-01", "--json=1"],
    ["state", "P001", "--at", "2008-06-01", "--wait", "-1"],
    ["state", "P001", "--at", "2008-06-01", "--wait", "nan"],
    ["state", "P001", "--at", "2008-06-01", "--wait", "soon"],
    ["state", "P001", "--at", "2008-06-01", "--no-such-option"],
    ["state", "P001", "--at", "2008-06-01", "-sfile.duckdb"],
    ["state", "--", "-P001", "--at", "2008-06-01"],
    ["explain", "P001", "crp_normal", "--at", "2008-06-01", "--rule", "x"],  # state's option
    ["history", "P001"],
    ["--version"],
]


@pytest.mark.parametrize("args", NOT_PLAIN, ids=[" ".join(a) or "none" for a in NOT_PLAIN])
def test_any_other_command_line_is_left_to_typer(args: list[str]) -> None:
    assert plain_arguments(args) is None
    assert plain_command(args) is None


PLAIN_VALUES = st.sampled_from(
    ["P001", "crp_normal", "2008-06-01", "a b", "x=1", "1.5", "0", "seq:3", "s.duckdb"]
)
ODD_VALUES = st.sampled_from(["", " ", "inf", "nan", "-2", "-", "--json", "1e3", "soon"])
VALUES = st.one_of(PLAIN_VALUES, PLAIN_VALUES, PLAIN_VALUES, ODD_VALUES)
OPTIONS = st.sampled_from(
    ["--rule", "--rules", "--param", "--store", "-s", "--wait", "--as-known-at", "--json", "--at"]
)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A `state` or `explain` command line: its positional words (most often as many as it
    takes), most often --at, and other options (as two words, or NAME=VALUE; --json most often
    bare), shuffled: about a fifth of them plain."""
    command = draw(st.sampled_from(["state", "explain"]))
    wanted = 1 if command == "state" else 2
    count = draw(st.sampled_from([wanted] * 6 + [wanted - 1, wanted + 1]))
    units: list[list[str]] = [[draw(VALUES)] for _ in range(count)]
    names = ["--at"] if draw(st.integers(0, 5)) else []
    names += draw(st.lists(OPTIONS, max_size=4))
    for name in names:
        value = draw(VALUES)
        if name == "--json" and draw(st.integers(0, 3)):
            units.append([name])
        else:
            units.append([f"{name}={value}"] if draw(st.booleans()) else [name, value])
    units = draw(st.permutations(units))
    return [command, *(w for u in units for w in u)]


@settings(max_examples=300, deadline=None)
@given(args=command_lines())
def test_whenever_a_command_line_is_read_as_plain_typer_reads_it_alike(args: list[str]) -> None:
    found = plain_arguments(args)
    if found is None:
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert through_typer(monkeypatch, args) == (0, found[1])


def test_the_executable_runs_a_plain_state_without_importing_typer(example_store: Path) -> None:
    probe = (
        "import sys; from cli.fast import entry; import atexit; "
        "atexit.register(lambda: print('typer' in sys.modules, 'click' in sys.modules, file=sys.stderr)); "
        "sys.argv = ['timeline', *sys.argv[1:]]; entry()"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "state", "P001", "--at", "2008-06-01", "--store", str(example_store)],
        capture_output=True,
        text=True,
        env={**output_env(unbuffered=False), "TIMELINE_NO_CACHE": "1"},
        timeout=120,
    )
    assert (done.returncode, done.stderr.splitlines()[-1]) == (0, "False False")
    assert done.stdout == run_cli("state", "P001", "--at", "2008-06-01", "--store", example_store).stdout


@pytest.mark.parametrize(
    "args",
    [
        ("state", "P001", "--at", "2008-06-01"),
        ("explain", "P001", "crp_normal", "--at", "2008-06-01", "--json"),
    ],
    ids=["state", "explain-json"],
)
def test_a_single_patient_command_uses_duckdbs_compiled_module_without_its_package(
    example_store: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """timeline.duck: the package's Python layer is ~0.08 s of start-up that `state` and
    `explain` do not use (the first run fills the rule cache, whose loader reads the ingest)."""
    probe = (
        "import sys, atexit; from cli.fast import entry; "
        "atexit.register(lambda: print([m for m in sys.modules if m.split('.')[0] == 'duckdb'], "
        "'_duckdb' in sys.modules, file=sys.stderr)); "
        "sys.argv = ['timeline', *sys.argv[1:]]; entry()"
    )
    env = {**output_env(unbuffered=False), "TIMELINE_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args, "--store", str(example_store)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert (done.returncode, done.stderr.splitlines()[-1]) == (0, "[] True")
    assert done.stdout == run_cli(*args, "--store", example_store).stdout


def test_timeline_duck_gives_the_classes_and_functions_the_duckdb_package_exports() -> None:
    import duckdb

    from timeline.duck import duckdb as compiled

    names = ["connect", "execute", "DuckDBPyConnection", "Error", "IOException", "InterruptException",
             "OutOfMemoryException", "InvalidInputException", "CatalogException"]  # fmt: skip
    assert all(getattr(compiled, n) is getattr(duckdb, n) for n in names)


def test_duckdbs_interrupt_is_ctrl_c_when_only_its_compiled_module_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.exits import _is_interrupt
    from timeline.duck import duckdb as compiled

    monkeypatch.delitem(sys.modules, "duckdb")
    assert _is_interrupt(compiled.InterruptException("interrupted"))


@pytest.mark.parametrize(
    "args",
    [
        ("state", "P001", "--at", "2008-06-01", "--json"),
        ("explain", "P001", "crp_normal", "--at", "2008-06-01"),
        ("state", "NOPE", "--at", "2008-06-01"),  # exit 5
        ("state", "P001", "--at", "2008-06-01", "--bad"),  # typer's usage error, exit 2
        ("explain", "P001", "crp_normal", "--help"),
    ],
    ids=["state-json", "explain", "unknown-patient", "usage-error", "help"],
)
def test_the_executable_ends_as_main_does_in_this_process(example_store: Path, args: tuple[str, ...]) -> None:
    probe = "import sys; from cli.fast import entry; sys.argv = ['timeline', *sys.argv[1:]]; entry()"
    done = subprocess.run(
        [sys.executable, "-c", probe, *args, "--store", str(example_store)],
        capture_output=True,
        text=True,
        env={**output_env(unbuffered=False), "TIMELINE_NO_CACHE": "1"},
        timeout=120,
    )
    here = run_cli(*args, "--store", example_store)
    assert (done.returncode, done.stdout, done.stderr) == (here.exit_code, here.stdout, here.stderr)


@pytest.mark.parametrize("command", ["state", "explain"])
def test_the_plain_parser_knows_exactly_the_options_typer_declares(command: str) -> None:
    """Every option of the command as typer declares it (its names, parameter, and whether it
    takes one value, many, or none) is in cli.fast's table, and nothing else: an option added to
    one parser and not the other fails here, not in a user's command line."""
    import typer.core
    import typer.main

    from cli.fast import _ARGUMENTS, _FLAG, _MANY, _ONE, _OPTIONS

    group = typer.main.get_command(only_command(app, [command]))
    declared: dict[str, tuple[str, str]] = {}
    positional: list[str] = []
    for param in group.commands[command].params:  # type: ignore[attr-defined]
        if isinstance(param, typer.core.TyperArgument):
            positional.append(str(param.name))
            continue
        assert isinstance(param, typer.core.TyperOption)
        kind = _FLAG if param.is_flag else _MANY if param.multiple else _ONE
        for name in param.opts:
            declared[name] = (str(param.name), kind)
    assert (_OPTIONS[command], _ARGUMENTS[command]) == (declared, tuple(positional))


def test_usage_errors_name_the_program_timeline_however_python_was_started() -> None:
    # `python -m cli.main` (and a test runner's own __main__) must not leak into the usage line
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "events", "--bad"],
        capture_output=True,
        text=True,
        env=output_env(unbuffered=False),
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: timeline events ")


def test_a_plain_command_runs_without_the_collector_and_turns_it_on_after(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cli.fast turns Python's collector off for the command, start-up (imports, the rules
    unpickled) and the patient's replay alike, and back on when it is done."""
    import gc

    seen: list[tuple[str, bool]] = []
    replayed = Session.state

    def state(self: Session, *args: Any, **kwargs: Any) -> Any:
        seen.append(("replaying", gc.isenabled()))
        return replayed(self, *args, **kwargs)

    monkeypatch.setattr(Session, "state", state)
    command = plain_command(["state", "P001", "--at", "2010-01-01", "--store", str(example_store)])
    assert command is not None
    command()
    assert seen == [("replaying", False)]
    assert gc.isenabled()


def test_a_plain_command_that_fails_leaves_the_collector_on(tmp_path: Path) -> None:
    import gc

    command = plain_command(["state", "P001", "--at", "2010-01-01", "--store", str(tmp_path / "none.duckdb")])
    assert command is not None
    with pytest.raises(Exception, match="no store"):
        command()
    assert gc.isenabled()
