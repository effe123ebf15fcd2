"""The bad-input corpus: every malformed file is rejected whole, with exact errors, and the
store is left exactly as it was.

Each case in ``bad_inputs/expected.json`` names a file (checked in, or a Parquet file built
from ``parquet_sql``), the exit code, and the error lines ``row N, field F: reason`` that
follow ``FILE: `` on stderr. Each case is ingested once, through the CLI, into a copy of a
store that holds the example events; the tests below then look at different sides of it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.support import CliResult, run_cli, snapshot, subprocess_env

BAD = Path(__file__).parent / "bad_inputs"
MANIFEST = BAD / "expected.json"
CASES: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Rejection:
    case: dict[str, Any]
    result: CliResult
    before: dict[str, Any]
    after: dict[str, Any]


def materialise(case: dict[str, Any], directory: Path) -> Path:
    """Put the case's file in ``directory`` (copy it, or write the Parquet it describes)."""
    target = directory / str(case["file"])
    if "parquet_sql" in case:
        con = duckdb.connect()
        try:
            con.execute(f"COPY ({case['parquet_sql']}) TO '{target}' (FORMAT parquet)")
        finally:
            con.close()
    else:
        shutil.copy(BAD / case["file"], target)
    return target


def expected_stderr(case: dict[str, Any]) -> list[str]:
    name, errors = case["file"], case["errors"]
    n = len(errors)
    head = f"error: {name}: batch rejected, nothing written ({n} error{'s' if n != 1 else ''})"
    return [head, *(f"  {name}: {line}" for line in errors)]


@pytest.fixture(scope="module", params=CASES, ids=[c["file"] for c in CASES])
def rejection(
    request: pytest.FixtureRequest, example_store_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Rejection:
    case: dict[str, Any] = request.param
    work = tmp_path_factory.mktemp("bad")
    store = work / "store.duckdb"
    shutil.copy(example_store_template, store)
    materialise(case, work)
    before = snapshot(store)
    # Relative file name, so that error lines do not depend on where pytest puts tmp files.
    with contextlib.chdir(work):
        result = run_cli("ingest", case["file"], "--store", store, "--author", "tester")
    return Rejection(case, result, before, snapshot(store))


def test_corpus_covers_every_file_in_the_directory() -> None:
    listed = {c["file"] for c in CASES if "parquet_sql" not in c}
    on_disk = {p.name for p in BAD.iterdir() if p.name != MANIFEST.name}
    assert listed == on_disk


def test_corpus_has_at_least_35_cases_each_with_an_error() -> None:
    assert len(CASES) >= 35
    assert all(c["errors"] for c in CASES)


def test_bad_input_exits_with_the_expected_code(rejection: Rejection) -> None:
    assert rejection.result.exit_code == rejection.case["exit"]


def test_bad_input_reports_exactly_the_expected_error_lines(rejection: Rejection) -> None:
    assert rejection.result.stderr.splitlines() == expected_stderr(rejection.case)


def test_bad_input_prints_nothing_on_stdout(rejection: Rejection) -> None:
    assert rejection.result.stdout == ""


def test_bad_input_shows_no_traceback_or_internal_error(rejection: Rejection) -> None:
    assert "Traceback" not in rejection.result.output
    assert "internal error" not in rejection.result.output


def test_bad_input_leaves_the_store_content_unchanged(rejection: Rejection) -> None:
    assert rejection.after == rejection.before


def test_bad_input_leaves_the_high_water_mark_unchanged(rejection: Rejection) -> None:
    assert rejection.after["high_water"] == rejection.before["high_water"] == (14,)


SUBPROCESS_CASES = ["latin1_byte.csv", "ragged_long_row.csv", "unknown_frequency.csv", "grade_7.parquet"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_errors_are_the_same_from_the_installed_command(
    name: str, example_store: Path, tmp_path: Path
) -> None:
    """Through a real pipe (no terminal) every error stays on one line, even a long one."""
    case = next(c for c in CASES if c["file"] == name)
    materialise(case, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", name, "--store", str(example_store), "--author", "t"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.splitlines()) == (case["exit"], expected_stderr(case))


def test_json_output_of_a_rejection_lists_every_error(example_store: Path, tmp_path: Path) -> None:
    case = next(c for c in CASES if c["file"] == "many_errors.csv")
    materialise(case, tmp_path)
    with contextlib.chdir(tmp_path):
        result = run_cli("ingest", case["file"], "--store", example_store, "--author", "t", "--json")
    rejected = json.loads(result.stdout)["rejected"]
    lines = [f"row {e['row']}, field {e['field']}: {e['reason']}" for e in rejected["errors"]]
    assert (result.exit_code, lines) == (6, case["errors"])
