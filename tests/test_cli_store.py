"""Creating and opening stores from the command line: what exists, what is ours, where it is."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.support import EXAMPLE_CSV, SLEEPING_VERIFY, interrupted_cli, raw_connection, run_cli


def test_init_creates_the_store_file(store_path: Path) -> None:
    result = run_cli("init", "--store", store_path)
    assert (result.exit_code, result.stdout, store_path.is_file()) == (
        0,
        f"created store {store_path} (time zone UTC: a time without a UTC offset is read as a clock time there)\n",
        True,
    )


def test_init_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "precious.duckdb"
    path.write_bytes(b"do not touch")
    result = run_cli("init", "--store", path)
    assert (result.exit_code, result.stderr) == (3, f"error: {path} already exists; not overwriting it\n")
    assert path.read_bytes() == b"do not touch"


def test_init_refuses_an_unknown_time_zone(store_path: Path) -> None:
    result = run_cli("init", "--store", store_path, "--timezone", "Mars/Olympus")
    assert result.exit_code == 2
    assert (
        result.stderr == "error: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Madrid)\n"
    )
    assert not store_path.exists()


def test_init_refuses_a_zone_name_in_the_wrong_case_with_the_right_spelling(store_path: Path) -> None:
    # DuckDB reads zone names case-blind; the store's zone must also open in Python's zoneinfo
    result = run_cli("init", "--store", store_path, "--timezone", "europe/madrid")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: unknown time zone 'europe/madrid' (did you mean 'Europe/Madrid'?)\n",
    )
    assert not store_path.exists()


@pytest.mark.parametrize("zone", ["GMT+2", "UTC+2"])
def test_init_refuses_a_zone_only_duckdb_reads(store_path: Path, zone: str) -> None:
    result = run_cli("init", "--store", store_path, "--timezone", zone)
    assert result.exit_code == 2
    assert f"unknown time zone {zone!r}" in result.stderr


def test_init_records_the_time_zone(store_path: Path) -> None:
    run_cli("init", "--store", store_path, "--timezone", "Europe/Madrid")
    info = json.loads(run_cli("info", "--store", store_path, "--json").stdout)
    assert info["timezone"] == "Europe/Madrid"


def test_missing_store_exits_3_and_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nothing.duckdb"
    result = run_cli("info", "--store", path)
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: no store at {path} (create one with `timeline init --store {path}`)\n",
    )


def test_missing_default_store_says_to_create_it_with_a_bare_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("info")
    assert (result.exit_code, result.stderr) == (
        3,
        "error: no store at timeline.duckdb (create one with `timeline init`)\n",
    )


def test_ingest_into_a_missing_store_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "nothing.duckdb"
    result = run_cli("ingest", tmp_path / "whatever.csv", "--store", path, "--author", "t")
    assert (result.exit_code, path.exists()) == (3, False)


def test_foreign_file_is_not_a_timeline_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("shopping list\n")
    result = run_cli("info", "--store", path)
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: {path} is not a timeline store: it is a text file, not a DuckDB file\n",
    )


def test_an_events_file_given_as_the_store_says_what_it_is_and_how_to_load_it(tmp_path: Path) -> None:
    """Helper 44: a CSV gave DuckDB's 'Cannot launch in-memory database in read-only mode'."""
    result = run_cli("info", "--store", EXAMPLE_CSV)
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: {EXAMPLE_CSV} is not a timeline store: it is a text file, not a DuckDB file "
        "(events to load? `timeline ingest events.csv --store STORE`)\n",
    )


def test_a_parquet_file_given_as_the_store_is_named_parquet(tmp_path: Path) -> None:
    """Helper 44: it was 'a DuckDB file but not a timeline store'."""
    path = tmp_path / "events.parquet"
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{path}' (FORMAT parquet)")
    before = path.read_bytes()
    result = run_cli("ingest", EXAMPLE_CSV, "--store", path, "--author", "t")
    assert (result.exit_code, result.stderr.split(": it is ")[1]) == (
        3,
        "a Parquet file (events to load? `timeline ingest events.parquet --store STORE`)\n",
    )
    assert path.read_bytes() == before


def test_an_empty_store_file_says_it_is_empty(tmp_path: Path) -> None:
    """Helper 42: a 0-byte file (a copy that never started) was "not a DuckDB file"."""
    path = tmp_path / "empty.duckdb"
    path.write_bytes(b"")
    result = run_cli("verify", "--store", path)
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: {path} is empty (0 bytes), not a timeline store: restore it from a backup\n",
    )


def test_duckdb_file_without_our_meta_table_is_not_a_timeline_store(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    with raw_connection(path) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    result = run_cli("info", "--store", path)
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: {path} is a DuckDB file but not a timeline store\n",
    )


def test_directory_is_not_a_store(tmp_path: Path) -> None:
    result = run_cli("info", "--store", tmp_path)
    assert (result.exit_code, result.stderr) == (3, f"error: {tmp_path} is a directory, not a store file\n")


def test_timeline_store_environment_variable_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.duckdb"
    monkeypatch.setenv("TIMELINE_STORE", str(path))
    run_cli("init")
    result = run_cli("info", "--json")
    assert (result.exit_code, json.loads(result.stdout)["store"]) == (0, str(path))


def test_store_option_beats_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMELINE_STORE", str(tmp_path / "env.duckdb"))
    run_cli("init", "--store", tmp_path / "option.duckdb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["option.duckdb"]


def test_default_store_is_timeline_duckdb_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_cli("init")
    assert (tmp_path / "timeline.duckdb").is_file()


def test_info_reports_counts_and_high_water(example_store: Path) -> None:
    info = json.loads(run_cli("info", "--store", example_store, "--json").stdout)
    assert (info["events"], info["batches"], info["high_water"], info["patients"]) == (14, 1, 14, 1)


def info_of(store: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run_cli("info", "--store", store, "--json").stdout)
    return data


def test_info_counts_a_corrected_event_once_and_each_of_its_versions(example_store: Path) -> None:
    """Was 15 events after one correction of the 14: ``events`` counted stored versions."""
    run_cli(
        "correct", "p1-crp2", "--set", "value=5", "--reason", "r", "--author", "a", "--store", example_store
    )
    info = info_of(example_store)
    assert (info["events"], info["versions"]) == (14, 15)


def test_info_leaves_a_retracted_event_out_and_counts_it_as_retracted(example_store: Path) -> None:
    run_cli("retract", "p1-rash1", "--reason", "r", "--author", "a", "--store", example_store)
    info = info_of(example_store)
    assert (info["events"], info["versions"], info["retracted"]) == (13, 15, 1)


def test_info_leaves_out_a_patient_whose_every_event_is_retracted(store_path: Path, tmp_path: Path) -> None:
    run_cli("init", "--store", store_path)
    path = tmp_path / "two.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,value,unit\nw1,P1,weight,2009-03-01,20,kg\nw2,P2,weight,2009-03-01,20,kg\n"
    )
    run_cli("ingest", path, "--store", store_path, "--author", "t")
    run_cli("retract", "w2", "--reason", "wrong patient", "--author", "a", "--store", store_path)
    assert info_of(store_path)["patients"] == 1


def test_info_names_each_count_on_the_terminal(example_store: Path) -> None:
    result = run_cli("info", "--store", example_store)
    assert [line.split(":")[0].strip() for line in result.stdout.splitlines()[3:]] == [
        "events", "versions", "retracted", "batches", "high_water", "patients",
    ]  # fmt: skip


def test_damaged_store_exits_3_never_with_an_internal_error(example_store: Path, tmp_path: Path) -> None:
    """Overwrite the start of each 256 KiB block in turn (where DuckDB keeps its checksum):
    every read either still works, or says the store is damaged. Never a crash."""
    outcomes = set()
    size = example_store.stat().st_size
    for offset in range(12288, size, 262144):
        path = tmp_path / f"damaged-{offset}.duckdb"
        shutil.copy(example_store, path)
        with path.open("r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * 64)
        for command in ("verify", "info"):
            result = run_cli(command, "--store", path)
            assert result.exit_code in (0, 3), result.output
            assert "internal error" not in result.output
            if result.exit_code == 3:
                assert result.stderr.startswith(
                    f"error: {path} is damaged and cannot be read (Corrupt database"
                )
                assert result.stderr.endswith("); restore it from a backup\n")
            outcomes.add(result.exit_code)
    assert 3 in outcomes  # at least one block that matters was hit


@pytest.mark.parametrize("kept", [20_000, 300_000])
def test_a_store_cut_short_is_damaged_not_another_kind_of_file(
    example_store: Path, tmp_path: Path, kept: int
) -> None:
    """A half-finished copy (helper 38: was "a DuckDB file but not a timeline store")."""
    path = tmp_path / "cut.duckdb"
    path.write_bytes(example_store.read_bytes()[:kept])
    result = run_cli("verify", "--store", path)
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"error: {path} is damaged and cannot be read (IO Error: Could not read enough"
    )


def test_writing_to_a_store_in_a_directory_it_cannot_write_is_refused_before_anything_runs(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB writes its log beside the store: without the directory the commit failed (exit 70).
    Tests run as root, for whom every directory is writable: the check is made to see one that is not."""
    import timeline.store

    real = os.access
    monkeypatch.setattr(
        timeline.store.os,
        "access",
        lambda p, mode: False if Path(p) == example_store.parent else real(p, mode),
    )
    before = example_store.read_bytes()
    result = run_cli("retract", "p1-crp1", "--reason", "r", "--author", "a", "--store", example_store)
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: cannot write to {example_store.parent}: DuckDB writes its log (example.duckdb.wal) beside the store\n"
    )
    assert example_store.read_bytes() == before


def test_a_store_missing_a_table_is_damaged_not_an_internal_error(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("DROP TABLE batches")
    result = run_cli("verify", "--store", example_store)
    assert result.exit_code == 3
    assert result.stderr.strip() == f"error: {example_store} is damaged: table batches is missing"


def test_a_store_missing_a_column_is_damaged_not_an_internal_error(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("ALTER TABLE events DROP COLUMN note")
    result = run_cli("verify", "--store", example_store)
    assert result.exit_code == 3
    assert (
        result.stderr.strip() == f"error: {example_store} is damaged: table events's column note is missing"
    )


def test_a_store_with_an_added_column_is_damaged(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("ALTER TABLE batches ADD COLUMN x INTEGER")
    result = run_cli("events", "P001", "--store", example_store)
    assert result.exit_code == 3
    assert "table batches's column x was added" in result.stderr


def test_a_store_of_an_unknown_schema_version_is_refused(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    result = run_cli("ingest", EXAMPLE_CSV, "--store", example_store, "--author", "t")
    assert result.exit_code == 3
    assert "has schema version '99', which this timeline" in result.stderr


def test_state_of_a_store_whose_time_zone_is_unknown_says_the_store_is_damaged(
    example_store: Path,
) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE meta SET value = 'Mars/Olympus' WHERE key = 'timezone'")
    result = run_cli("state", "P001", "--at", "2010-01-01", "--store", example_store)
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        f"error: {example_store} is damaged: its time zone 'Mars/Olympus' is not a known zone"
    )


def test_a_store_whose_time_zone_is_null_reads_its_times_as_utc(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE meta SET value = NULL WHERE key = 'timezone'")
    result = run_cli("events", "P001", "--store", example_store, "--json")
    assert result.exit_code == 0, result.stderr
    times = [e["occurred_at"] for e in json.loads(result.stdout)["events"] if "T" in e["occurred_at"]]
    assert times and all(t.endswith("Z") for t in times)


def test_a_store_whose_time_zone_is_unknown_is_closed_when_the_zone_is_refused(
    example_store: Path,
) -> None:
    from cli.output import store_zone
    from timeline.errors import StoreError
    from timeline.store import Store

    with raw_connection(example_store) as con:
        con.execute("UPDATE meta SET value = 'Mars/Olympus' WHERE key = 'timezone'")
    s = Store.open(example_store)
    with pytest.raises(StoreError):
        store_zone(s)
    with pytest.raises(duckdb.ConnectionException):
        s.con.execute("SELECT 1")


def test_ingest_into_a_store_whose_time_zone_is_unknown_is_refused(
    example_store: Path, tmp_path: Path
) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE meta SET value = 'Mars/Olympus' WHERE key = 'timezone'")
    late = tmp_path / "late.csv"
    late.write_text("patient_id,kind,occurred_at,value,unit\nP001,weight,2009-03-01T10:00+02:00,30,kg\n")
    result = run_cli("ingest", late, "--store", example_store, "--author", "t")
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        f"error: {example_store} is damaged: its time zone 'Mars/Olympus' is not a known zone"
    )


def test_the_library_never_lets_duckdb_draw_progress_bars_on_stdout(example_store: Path) -> None:
    from timeline.store import Store

    with Store.open(example_store) as s:
        found = s.con.execute("SELECT current_setting('enable_progress_bar_print')").fetchone()
    assert found == (False,)


def test_init_into_a_directory_says_it_is_one(tmp_path: Path) -> None:
    result = run_cli("init", "--store", tmp_path)
    assert result.exit_code == 3
    assert result.stderr.strip() == f"error: {tmp_path} is a directory: give the store's file name"


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_wait_must_be_a_finite_number_of_seconds(example_store: Path, value: str) -> None:
    result = run_cli("events", "P001", "--store", example_store, "--wait", value)
    assert result.exit_code == 2
    assert "is not a number of seconds" in result.stderr


# A query that runs until it is interrupted.
ENDLESS_QUERY = "SELECT sum(i) FROM range(1000000000000000) t(i)"


def test_ctrl_c_during_a_query_says_interrupted_and_exits_130(example_store: Path) -> None:
    # DuckDB stops the query and raises an error of its own (RuntimeError: Query interrupted)
    setup = f"""
import timeline.integrity as integrity
def verify(store):
    ready()
    store.con.execute("{ENDLESS_QUERY}").fetchall()
integrity.verify = verify
"""
    result = interrupted_cli(setup, "verify", "--store", example_store)
    assert (result.exit_code, result.stderr, result.stdout) == (130, "error: interrupted\n", "")


def test_ctrl_c_between_queries_says_interrupted_and_exits_130(example_store: Path) -> None:
    # in Python code typer catches the KeyboardInterrupt itself and exits 130 without a word
    result = interrupted_cli(SLEEPING_VERIFY, "verify", "--store", example_store)
    assert (result.exit_code, result.stderr, result.stdout) == (130, "error: interrupted\n", "")


@pytest.mark.parametrize(
    ("command", "verb"), [(("init",), "create"), (("info",), "open"), (("ingest", EXAMPLE_CSV), "open")]
)
def test_a_store_name_too_long_is_named_with_the_reason_and_exits_3(
    tmp_path: Path, command: tuple[str | Path, ...], verb: str
) -> None:
    store = tmp_path / ("a" * 300 + ".duckdb")  # longer than a file name may be (255 bytes)
    result = (
        run_cli(*command, "--store", store, "--author", "t")
        if "ingest" in command
        else run_cli(*command, "--store", store)
    )
    # before: "internal error: OSError: [Errno 36] File name too long", exit 70
    assert (result.exit_code, result.stderr) == (3, f"error: cannot {verb} {store}: File name too long\n")
