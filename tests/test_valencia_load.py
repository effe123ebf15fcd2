"""examples/valencia/load.py as a user runs it: a clean error and the command line's exit code
for a store it cannot create, never a traceback; --replace to load it afresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EXAMPLES, subprocess_env, valencia_module
from timeline.store import Store

LOAD = EXAMPLES / "valencia" / "load.py"


def run_load(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOAD), *(str(a) for a in args)],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip


def test_a_store_in_a_missing_directory_is_an_error_naming_it_with_exit_3(tmp_path: Path) -> None:
    result = run_load("--store", tmp_path / "nodir" / "v.duckdb")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"error: directory {tmp_path / 'nodir'} does not exist\n"


def test_a_store_already_there_is_not_overwritten_and_replace_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.duckdb"
    Store.create(path).close()
    before = path.read_bytes()
    assert valencia_module("load").main(["--store", str(path)]) == 3
    assert capsys.readouterr().err == (
        f"error: {path} already exists; not overwriting it: give --replace to load the example afresh into it\n"
    )
    assert path.read_bytes() == before


def test_replace_loads_the_example_afresh_into_a_store_already_there(tmp_path: Path) -> None:
    path = tmp_path / "v.duckdb"
    Store.create(path).close()
    assert valencia_module("load").main(["--store", str(path), "--replace"]) == 0
    with Store.open(path) as store:
        assert store.high_water() == 3476  # 3,470 events, 6 amendments
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.duckdb"]  # nothing left beside it


def test_replace_refuses_a_file_that_is_not_a_store_and_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a store\n", encoding="utf-8")
    assert valencia_module("load").main(["--store", str(path), "--replace"]) == 3
    assert capsys.readouterr().err.startswith(f"error: not replaced: {path} is not a timeline store")
    assert path.read_text(encoding="utf-8") == "not a store\n"


def test_a_load_that_fails_leaves_no_store_behind(tmp_path: Path) -> None:
    from timeline.errors import IngestError

    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,kind,occurred_at\nX,no_such_kind,2009-01-01\n", encoding="utf-8")
    path = tmp_path / "v.duckdb"
    with pytest.raises(IngestError):
        valencia_module("load").load(path, events=bad)
    assert not path.exists()
