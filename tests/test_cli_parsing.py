"""The command line's values are coerced as typer coerces them, without building pydantic's
validators for the plain values every command takes (cli/options.py, ``_PlainFirst``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import app
from tests.support import run_cli, subprocess_env

typer_coercion = pytest.importorskip("typer._coercion")

PARAMS = {p.name: p for p in typer.main.get_command(app).commands["state"].params}  # type: ignore[attr-defined]


def typers(param: Any, value: Any) -> tuple[str, Any]:
    """typer's own coercion of ``value``: ("ok", the value) or ("error", its message)."""
    try:
        built = typer_coercion.build_runtime_param(param.type_descriptor)
        return "ok", built._coerce_value(value, param=param, ctx=None)
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"


def ours(param: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", param.get_runtime_param()._coerce_value(value, param=param, ctx=None)
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"


def test_the_commands_parameters_coerce_plain_values_first() -> None:
    assert type(PARAMS["store"].get_runtime_param()).__name__ == "_PlainFirst"


texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        ["patient", "at", "as_known_at", "rule", "param", "store", "rules", "wait", "json_out"]
    ),
    value=st.one_of(
        texts,
        st.lists(texts, max_size=3),
        st.tuples(texts, texts),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.booleans(),
        st.sampled_from([".", "/", "/etc/passwd", "no/such/file", "~", "-"]),
    ),
)
def test_a_value_is_coerced_as_typer_coerces_it(name: str, value: Any) -> None:
    param = PARAMS[name]
    want, got = typers(param, value), ours(param, value)
    assert got == want
    assert type(got[1]) is type(want[1])
    if isinstance(want[1], list):
        assert [type(v) for v in got[1]] == [type(v) for v in want[1]]


def test_an_unreadable_store_path_is_refused_as_typer_refuses_it(tmp_path: Path) -> None:
    locked = tmp_path / "locked.duckdb"
    locked.write_bytes(b"")
    locked.chmod(0)
    try:
        assert ours(PARAMS["store"], str(locked)) == typers(PARAMS["store"], str(locked))
    finally:
        locked.chmod(0o600)


def test_a_wait_that_is_no_number_is_a_usage_error() -> None:
    result = run_cli("state", "P1", "--at", "2009-01-01", "--wait", "soon")
    assert result.exit_code == 2
    assert "--wait" in result.output


def test_a_plain_state_command_builds_no_pydantic_type_adapter(example_store: Path) -> None:
    """typer 0.29 built a TypeAdapter for each of the command's parameters, given or not,
    which imported pydantic's validation machinery at every start (typer._adapters)."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('adapters:', 'typer._adapters' in sys.modules))\n"
        "from cli.main import main\n"
        f"sys.argv = ['timeline', 'state', 'P001', '--at', '2008-02-10', '--store', {str(example_store)!r},"
        " '--rule', 'fever_free']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(), check=False
    )
    assert done.returncode == 0, done.stderr
    assert "fever_free" in done.stdout
    assert done.stdout.rstrip().endswith("adapters: False")


@pytest.mark.parametrize(
    "command", [["state", "P001"], ["explain", "P001", "fever_free"]], ids=["state", "explain"]
)
def test_a_command_whose_rules_are_cached_imports_no_pydantic(
    example_store: Path, tmp_path: Path, command: list[str]
) -> None:
    """The rule tree's classes are plain Python: importing the engine and reading the cached
    rules imported pydantic and built ~40 model classes (~0.05 s of every start)."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('pydantic:', 'pydantic' in sys.modules))\n"
        "from cli.main import main\n"
        f"sys.argv = ['timeline', *{command!r}, '--at', '2008-02-10', '--store', {str(example_store)!r}]\n"
        "main()\n"
    )
    env = subprocess_env(TIMELINE_CACHE_DIR=str(tmp_path / "cache"))
    outputs = [
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False)
        for _ in range(2)  # the first reads the rule files (and writes the cache), the second the cache
    ]
    assert [done.returncode for done in outputs] == [0, 0], outputs[1].stderr
    assert outputs[1].stdout.rstrip().endswith("pydantic: False")


def test_a_typer_whose_descriptors_read_otherwise_falls_back_to_its_own_coercion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cli.options

    def unreadable(*_: object) -> object:
        raise AttributeError("parameter_info")

    monkeypatch.setattr(cli.options, "_plain", unreadable)
    result = run_cli("state", "P", "--at", "2009-01-01", "--store", tmp_path / "none.duckdb")
    # typer's own coercion parsed the line: the command ran and named the missing store
    assert (result.exit_code, "no store at" in result.stderr) == (3, True)
