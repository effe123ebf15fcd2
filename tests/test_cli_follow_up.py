"""The commands a command suggests running next (helper 62, finding 8): each carries the options
the user gave that it needs (store, rule directories, parameters, the moment of recording),
quoted for the shell, so that it works when pasted."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cohort_support import COHORT, RULES, build_store
from tests.engine_support import write_rule
from tests.support import run_cli

CRP = {"kind": "lab", "code": "1988-5"}


def pasted(command: str) -> tuple[int, str]:
    """Run a suggested `timeline …` command line as a shell would split it."""
    words = shlex.split(command)
    assert words[0] == "timeline", command
    result = run_cli(*words[1:])
    return result.exit_code, result.output


@pytest.fixture
def own_rules(tmp_path: Path) -> Path:
    """A rule of the user's own, in a directory whose name needs quoting, with a parameter."""
    directory = tmp_path / "my rules"
    write_rule(
        directory,
        "crp_below",
        {"lt": [{"latest": {"select": CRP, "within": "30 days"}}, {"param": "limit"}]},
        params={"limit": {"default": "6 mg/L", "description": "the limit"}},
    )
    return directory


def test_history_caption_gives_an_explain_command_that_runs_as_pasted(
    example_store: Path, own_rules: Path
) -> None:
    given = ("--rules", own_rules, "--param", "crp_below.limit=5 mg/L", "--as-known-at", "seq:14")
    result = run_cli("history", "P001", "--rule", "crp_below", *given, "--store", example_store)
    assert result.exit_code == 0, result.output
    command = re.search(r"why a value holds: (timeline explain .*)", result.stdout)
    assert command is not None, result.stdout
    code, output = pasted(command.group(1).strip())
    assert code == 0, (command.group(1), output)
    assert "crp_below" in output


def test_history_caption_repeats_the_store_rules_parameters_and_moment_quoted(
    example_store: Path, own_rules: Path
) -> None:
    result = run_cli(
        "history", "P001", "--rule", "crp_below", "--rules", own_rules, "--param", "crp_below.limit=5 mg/L",
        "--as-known-at", "seq:14", "--store", example_store,
    )  # fmt: skip
    assert (
        f"--rules {shlex.quote(str(own_rules))} --param 'crp_below.limit=5 mg/L' --as-known-at seq:14 "
        f"--store {shlex.quote(str(example_store))}"
    ) in result.stdout


def test_history_note_of_a_growing_number_gives_a_state_command_with_the_options_given(
    example_store: Path,
) -> None:
    result = run_cli("history", "P001", "--rule", "age_years", "--store", example_store, "--csv")
    assert result.exit_code == 0, result.output
    command = re.search(r"`(timeline state [^`]*)` gives it on a date", result.stderr)
    assert command is not None, result.stderr
    code, output = pasted(command.group(1).replace("DATE", "2008-02-10"))
    assert code == 0, output
    assert "age_years" in output


def test_cohort_run_footer_gives_a_patients_command_that_runs_as_pasted(tmp_path: Path) -> None:
    store = build_store(tmp_path / "cohort store.duckdb")
    result = run_cli("cohort", "run", COHORT, "--store", store, "--rules", RULES)
    assert result.exit_code == 0, result.output
    command = re.search(r"patients behind a cell: (timeline cohort patients .*)", result.stdout)
    assert command is not None, result.stdout
    code, output = pasted(command.group(1).strip())
    assert code == 0, (command.group(1), output)
    assert "denominator (N=" in output


def test_cohort_run_names_the_explain_command_for_the_unknowns_with_the_options_given(tmp_path: Path) -> None:
    store = build_store(tmp_path / "cohort.duckdb")
    result = run_cli("cohort", "run", COHORT, "--store", store, "--rules", RULES, "--as-known-at", "seq:55")
    assert result.exit_code == 0, result.output
    assert (
        f"`timeline cohort explain {COHORT} PATIENT --rules {RULES} --as-known-at seq:55 --store {store}` "
        "gives each one's"
    ) in result.stdout


def test_a_missing_store_given_by_path_is_created_by_the_init_command_its_error_suggests(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new store.duckdb"
    result = run_cli("info", "--store", path)
    command = re.search(r"create one with `([^`]*)`", result.stderr)
    assert result.exit_code == 3 and command is not None, result.stderr
    code, output = pasted(command.group(1))
    assert (code, path.exists()) == (0, True), output
