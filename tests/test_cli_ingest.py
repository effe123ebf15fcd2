"""Ingesting files from the command line: what is added, what is skipped, how values are
stored, and that CSV, JSON Lines and Parquet mean the same thing."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.support import (
    EXAMPLE_CSV,
    CliResult,
    interrupted_cli,
    rows_without,
    run_cli,
    snapshot,
    subprocess_env,
)
from timeline import events as ev
from timeline.ingest import ingest_file
from timeline.store import Store, _dicts


def current_timeline(store: Path) -> list[dict[str, Any]]:
    with Store.open(store) as s:
        rows = _dicts(s.con.execute(s.current_sql(s.high_water())))
    return rows_without(rows)


def event(store: Path, event_id: str) -> dict[str, Any]:
    result = run_cli("events", "P001", "--store", store, "--json")
    return next(e for e in json.loads(result.stdout)["events"] if e["event_id"] == event_id)


def typed(column: str, text: str) -> Any:
    """A CSV cell as the JSON value a producer would write for its column's type."""
    kind = ev.COLUMN_TYPES[column]
    if kind == "DOUBLE":
        return float(text)
    if kind == "INTEGER":
        return int(text)
    if kind == "BOOLEAN":
        return text == "true"
    return text


@pytest.fixture
def example_jsonl(tmp_path: Path) -> Path:
    """examples/events.csv as JSON Lines: typed values, empty cells left out."""
    path = tmp_path / "events.jsonl"
    with EXAMPLE_CSV.open(encoding="utf-8") as fh:
        rows = [{k: typed(k, v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def example_parquet(tmp_path: Path) -> Path:
    """examples/events.csv as Parquet, each column of its native type (dates as text)."""
    path = tmp_path / "events.parquet"
    cols = ", ".join(f"TRY_CAST({c} AS {t}) AS {c}" for c, t in ev.COLUMN_TYPES.items())
    con = duckdb.connect()
    try:
        con.execute(
            f"COPY (SELECT {cols} FROM read_csv('{EXAMPLE_CSV}', all_varchar = true, header = true))"
            f" TO '{path}' (FORMAT parquet)"
        )
    finally:
        con.close()
    return path


@pytest.fixture
def empty_store(store_path: Path) -> Path:
    run_cli("init", "--store", store_path)
    return store_path


def test_ingest_reports_events_added_as_one_batch(empty_store: Path) -> None:
    result = run_cli("ingest", EXAMPLE_CSV, "--store", empty_store, "--author", "t")
    assert (result.exit_code, result.stdout) == (
        0,
        f"{EXAMPLE_CSV}: 14 events added as batch 1, 0 duplicates skipped (high-water seq 14)\n",
    )


def test_ingesting_the_same_file_twice_says_14_duplicates_skipped(example_store: Path) -> None:
    result = run_cli("ingest", EXAMPLE_CSV, "--store", example_store, "--author", "t")
    assert (result.exit_code, result.stdout) == (
        0,
        f"{EXAMPLE_CSV}: 0 events added, 14 duplicates skipped (high-water seq 14)\n",
    )


def test_ingesting_the_same_file_twice_writes_nothing(example_store: Path) -> None:
    before = snapshot(example_store)
    run_cli("ingest", EXAMPLE_CSV, "--store", example_store, "--author", "t")
    assert snapshot(example_store) == before


def test_rows_without_event_ids_are_recognised_when_ingested_again(empty_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "no-ids.csv"
    path.write_text(
        "patient_id,kind,occurred_at,code,value,unit\nP9,lab,2009-03-01,1988-5,4,mg/L\nP9,lab,2009-03-02,1988-5,5,mg/L\n"
    )
    run_cli("ingest", path, "--store", empty_store, "--author", "t")
    again = run_cli("ingest", path, "--store", empty_store, "--author", "t")
    assert again.stdout == f"{path}: 0 events added, 2 duplicates skipped (high-water seq 2)\n"


def test_a_date_only_end_on_the_day_of_a_timed_start_is_accepted(empty_store: Path, tmp_path: Path) -> None:
    # a date-only end covers its whole day: the fever ends after it began at 10:00
    path = tmp_path / "same-day.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,ended_at,code\nq1,P1,finding,2009-10-25T10:00,2009-10-25,fever\n"
    )
    result = run_cli("ingest", path, "--store", empty_store, "--author", "t")
    assert result.exit_code == 0, result.output
    [stored] = json.loads(run_cli("events", "P1", "--store", empty_store, "--json").stdout)["events"]
    assert stored["ended_at"].startswith("2009-10-25")


def test_a_date_only_end_on_the_day_before_a_timed_start_is_refused(
    empty_store: Path, tmp_path: Path
) -> None:
    path = tmp_path / "day-before.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,ended_at,code\nq1,P1,finding,2009-10-25T10:00,2009-10-24,fever\n"
    )
    result = run_cli("ingest", path, "--store", empty_store, "--author", "t")
    assert result.exit_code == 6
    assert "row 1, field ended_at: ends (2009-10-24) before it starts (2009-10-25T10:00)" in result.stderr


def _seqs(store: Path) -> list[tuple[str, int]]:
    with Store.open(store) as s:
        return [
            (str(e), int(q))
            for e, q in s.con.execute("SELECT event_id, seq FROM events ORDER BY seq").fetchall()
        ]


def test_a_file_of_new_events_takes_the_next_seqs_in_file_order(empty_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,code\nb,P9,diagnosis,2009-03-01,sJIA\na,P9,diagnosis,2009-03-02,sJIA\n"
    )
    run_cli("ingest", path, "--store", empty_store, "--author", "t")
    assert _seqs(empty_store) == [("b", 1), ("a", 2)]


def test_a_blank_line_in_json_lines_leaves_no_gap_in_the_seqs(empty_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "gap.jsonl"
    row = {"patient_id": "P9", "kind": "diagnosis", "code": "sJIA"}
    path.write_text(
        json.dumps({**row, "event_id": "b", "occurred_at": "2009-03-01"})
        + "\n\n"
        + json.dumps({**row, "event_id": "a", "occurred_at": "2009-03-02"})
        + "\n"
    )
    run_cli("ingest", path, "--store", empty_store, "--author", "t")
    assert _seqs(empty_store) == [("b", 1), ("a", 2)]


def _diagnoses(path: Path, *events: tuple[str, str]) -> Path:
    """A CSV file of sJIA diagnoses of patient P9, given as (event id, date)."""
    rows = "".join(f"{eid},P9,diagnosis,{day},sJIA\n" for eid, day in events)
    path.write_text("event_id,patient_id,kind,occurred_at,code\n" + rows)
    return path


def test_new_events_among_duplicates_take_the_next_seqs_in_file_order(
    empty_store: Path, tmp_path: Path
) -> None:
    x, y, z = ("x", "2009-03-01"), ("y", "2009-03-02"), ("z", "2009-03-03")
    first = _diagnoses(tmp_path / "first.csv", x)
    second = _diagnoses(tmp_path / "second.csv", x, z, z, y)
    run_cli("ingest", first, second, "--store", empty_store, "--author", "t")
    assert _seqs(empty_store) == [("x", 1), ("z", 2), ("y", 3)]


def test_an_event_already_stored_is_skipped_in_a_file_whose_ids_are_all_different(
    empty_store: Path, tmp_path: Path
) -> None:
    x, y = ("x", "2009-03-01"), ("y", "2009-03-02")
    first = _diagnoses(tmp_path / "first.csv", x)
    second = _diagnoses(tmp_path / "second.csv", x, y)
    run_cli("ingest", first, "--store", empty_store, "--author", "t")
    again = run_cli("ingest", second, "--store", empty_store, "--author", "t")
    assert again.stdout == f"{second}: 1 event added as batch 2, 1 duplicate skipped (high-water seq 2)\n"
    assert _seqs(empty_store) == [("x", 1), ("y", 2)]


def test_each_file_is_its_own_batch(empty_store: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("event_id,patient_id,kind,occurred_at,code\nq-1,P002,diagnosis,2009-03-01,sJIA\n")
    result = run_cli("ingest", EXAMPLE_CSV, other, "--store", empty_store, "--author", "t")
    assert result.stdout.splitlines() == [
        f"{EXAMPLE_CSV}: 14 events added as batch 1, 0 duplicates skipped (high-water seq 14)",
        f"{other}: 1 event added as batch 2, 0 duplicates skipped (high-water seq 15)",
    ]


def test_ingest_stops_at_the_first_rejected_file_keeping_earlier_ones(
    empty_store: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("event_id,patient_id,kind,occurred_at\nz-1,P002,labb,2009-03-01\n")
    later = tmp_path / "later.csv"
    later.write_text("event_id,patient_id,kind,occurred_at,code\nq-1,P002,diagnosis,2009-03-01,sJIA\n")
    result = run_cli("ingest", EXAMPLE_CSV, bad, later, "--store", empty_store, "--author", "t")
    with Store.open(empty_store) as s:
        info = s.info()
    assert (result.exit_code, info.batches, info.events) == (6, 1, 14)


def test_author_defaults_to_the_timeline_author_variable(
    empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMELINE_AUTHOR", "Dr. Ruiz")
    run_cli("ingest", EXAMPLE_CSV, "--store", empty_store)
    assert event(empty_store, "p1-crp1")["author"] == "Dr. Ruiz"


def test_lab_value_is_stored_in_the_canonical_unit(example_store: Path) -> None:
    crp = event(example_store, "p1-crp1")
    assert (crp["value"], crp["unit"], crp["ref_low"], crp["ref_high"]) == (84.0, "mg/L", 0.0, 5.0)


def test_lab_value_keeps_its_original_value_and_unit(example_store: Path) -> None:
    crp = event(example_store, "p1-crp1")
    assert (crp["orig_value"], crp["orig_unit"], crp["orig_ref_low"], crp["orig_ref_high"]) == (
        8.4,
        "mg/dL",
        0.0,
        0.5,
    )


def test_fahrenheit_temperature_is_stored_in_celsius(example_store: Path) -> None:
    t = event(example_store, "p1-t2")
    assert (t["value"], t["unit"], t["orig_value"], t["orig_unit"]) == (37.0, "Cel", 98.6, "[degF]")


def madrid_store(tmp_path: Path) -> Path:
    """A new, empty store in Europe/Madrid (daylight saving time; offsets of seconds before 1901)."""
    store = tmp_path / "madrid.duckdb"
    assert run_cli("init", "--store", store, "--timezone", "Europe/Madrid").exit_code == 0
    return store


def test_time_with_an_offset_is_converted_into_the_store_time_zone(tmp_path: Path) -> None:
    store = madrid_store(tmp_path)
    path = tmp_path / "t.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,value,unit\nt-1,P001,body_temperature,2009-03-01T10:00+02:00,38,Cel\n"
    )
    run_cli("ingest", path, "--store", store, "--author", "t")
    assert (
        run_cli("events", "P001", "--store", store, "--json").stdout.count(
            '"occurred_at": "2009-03-01T09:00:00+01:00"'
        )
        == 1
    )


def _parquet_with_time(tmp_path: Path, time_sql: str) -> Path:
    path = tmp_path / "t.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            f"""COPY (SELECT 't-1' AS event_id, 'P001' AS patient_id, 'body_temperature' AS kind,
                             {time_sql} AS occurred_at, 38.0 AS value, 'Cel' AS unit)
                TO '{path}' (FORMAT parquet)"""
        )
    finally:
        con.close()
    return path


def test_a_parquet_time_with_a_zone_is_converted_into_the_store_time_zone(tmp_path: Path) -> None:
    store = madrid_store(tmp_path)
    path = _parquet_with_time(tmp_path, "TIMESTAMPTZ '2009-03-01 08:00:00+00'")  # pandas' tz-aware
    assert run_cli("ingest", path, "--store", store, "--author", "t").exit_code == 0
    [stored] = json.loads(run_cli("events", "P001", "--store", store, "--json").stdout)["events"]
    assert stored["occurred_at"] == "2009-03-01T09:00:00+01:00"


def test_a_parquet_time_with_a_zone_in_nanoseconds_is_converted_too(tmp_path: Path) -> None:
    # pandas' default for tz-aware datetimes; DuckDB reads it as TIMESTAMPTZ_NS
    store = madrid_store(tmp_path)
    path = _parquet_with_time(tmp_path, "'2009-03-01 08:00:00.123456+00'::TIMESTAMPTZ_NS")
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 0, result.output
    [stored] = json.loads(run_cli("events", "P001", "--store", store, "--json").stdout)["events"]
    assert stored["occurred_at"] == "2009-03-01T09:00:00.123456+01:00"


def test_a_time_with_an_offset_in_the_repeated_autumn_hour_is_refused(tmp_path: Path) -> None:
    # 00:45Z is 02:45 in Madrid on 25 October 2009, in the hour that repeats: kept as a clock
    # time it would sort after 01:10Z (02:10, the second pass); 02:10Z is 03:10, which happens once
    store = madrid_store(tmp_path)
    path = tmp_path / "fold.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,code,value,unit\n"
        "early,P1,lab,2009-10-25T00:45Z,1988-5,3,mg/L\n"
        "after,P1,lab,2009-10-25T02:10Z,1988-5,5,mg/L\n"
    )
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 6
    assert (
        "row 1, field occurred_at: is 02:45 in Europe/Madrid, in the hour repeated when daylight"
        in result.stderr
    )
    assert "row 2" not in result.stderr


def ingest_times(store: Path, tmp_path: Path, *times: str, column: str = "occurred_at") -> CliResult:
    """Ingest one lab row a time (``column`` holding it; an ``ended_at`` is a finding's)."""
    path = tmp_path / "times.csv"
    if column == "occurred_at":
        rows = "".join(f"t{i},P1,lab,{t},1988-5,3,mg/L\n" for i, t in enumerate(times))
        path.write_text("event_id,patient_id,kind,occurred_at,code,value,unit\n" + rows)
    else:
        rows = "".join(f"t{i},P1,finding,2009-03-28,{t},fever\n" for i, t in enumerate(times))
        path.write_text("event_id,patient_id,kind,occurred_at,ended_at,code\n" + rows)
    return run_cli("ingest", path, "--store", store, "--author", "t")


# Madrid's clocks went from 02:00 to 03:00 on 29 March 2009: 02:00 to 02:59:59 never happened
@pytest.mark.parametrize(
    "time", ["2009-03-29T02:00", "2009-03-29T02:30", "2009-03-29T02:59", "2009-03-29 02:59:59.999999"]
)
def test_a_clock_time_the_spring_forward_gap_skipped_is_refused(tmp_path: Path, time: str) -> None:
    result = ingest_times(madrid_store(tmp_path), tmp_path, time)
    assert (result.exit_code, "row 1, field occurred_at: is " in result.stderr) == (6, True)


@pytest.mark.parametrize("time", ["2009-03-29T01:59:59", "2009-03-29T03:00", "2009-03-29T03:00:00.000001"])
def test_a_clock_time_at_the_edge_of_the_spring_forward_gap_is_stored(tmp_path: Path, time: str) -> None:
    store = madrid_store(tmp_path)
    assert ingest_times(store, tmp_path, time).exit_code == 0


def test_a_time_in_the_spring_forward_gap_is_refused_saying_it_never_happened(tmp_path: Path) -> None:
    result = ingest_times(madrid_store(tmp_path), tmp_path, "2009-03-29T02:30")
    assert result.stderr.splitlines()[1:] == [
        f"  {tmp_path / 'times.csv'}: row 1, field occurred_at: is '2009-03-29T02:30', a clock time that never "
        "happened in Europe/Madrid: its clocks went forward 1 hour over it (as when daylight saving time begins). "
        "Check the source's clock; a time given with its UTC offset names one instant"
    ]


def test_a_refused_time_in_the_spring_forward_gap_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = madrid_store(tmp_path)
    before = snapshot(store)
    ingest_times(store, tmp_path, "2009-03-29T01:00", "2009-03-29T02:30")
    assert snapshot(store) == before


def test_an_end_in_the_spring_forward_gap_is_refused(tmp_path: Path) -> None:
    result = ingest_times(madrid_store(tmp_path), tmp_path, "2009-03-29T02:15", column="ended_at")
    assert "row 1, field ended_at: is '2009-03-29T02:15', a clock time that never happened" in result.stderr


def test_a_time_with_an_offset_on_the_spring_forward_day_is_stored_at_its_clock_time(tmp_path: Path) -> None:
    # 02:30+01:00 is 01:30Z, which Madrid's clocks read as 03:30
    store = madrid_store(tmp_path)
    ingest_times(store, tmp_path, "2009-03-29T02:30+01:00")
    [stored] = json.loads(run_cli("events", "P1", "--store", store, "--json").stdout)["events"]
    assert stored["occurred_at"] == "2009-03-29T03:30:00+02:00"


def test_the_spring_forward_gap_of_another_year_is_refused(tmp_path: Path) -> None:
    # 2024: the last Sunday of March is the 31st
    result = ingest_times(madrid_store(tmp_path), tmp_path, "2024-03-31T02:10", "2024-03-24T02:10")
    assert re.findall(r"row (\d+), field occurred_at: is", result.stderr) == ["1"]


def test_a_date_whose_midnight_a_zone_skipped_is_stored(tmp_path: Path) -> None:
    # São Paulo's clocks went from 00:00 to 01:00 on 4 November 2018: the day itself happened
    store = tmp_path / "sp.duckdb"
    run_cli("init", "--store", store, "--timezone", "America/Sao_Paulo")
    assert ingest_times(store, tmp_path, "2018-11-04").exit_code == 0


def test_a_midnight_time_a_zone_skipped_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "sp.duckdb"
    run_cli("init", "--store", store, "--timezone", "America/Sao_Paulo")
    assert ingest_times(store, tmp_path, "2018-11-04T00:00").exit_code == 6


def test_a_half_hour_spring_forward_gap_is_named_in_minutes(tmp_path: Path) -> None:
    # Lord Howe Island moves its clocks half an hour: 02:00 to 02:30 on 1 October 2023
    store = tmp_path / "lh.duckdb"
    run_cli("init", "--store", store, "--timezone", "Australia/Lord_Howe")
    result = ingest_times(store, tmp_path, "2023-10-01T02:15", "2023-10-01T02:30")
    assert [line for line in result.stderr.splitlines() if "field" in line] == [
        f"  {tmp_path / 'times.csv'}: row 1, field occurred_at: is '2023-10-01T02:15', a clock time that never "
        "happened in Australia/Lord_Howe: its clocks went forward 30 minutes over it (as when daylight saving "
        "time begins). Check the source's clock; a time given with its UTC offset names one instant"
    ]


def test_a_utc_store_keeps_a_clock_time_madrid_skipped(empty_store: Path, tmp_path: Path) -> None:
    assert ingest_times(empty_store, tmp_path, "2009-03-29T02:30").exit_code == 0


def test_a_time_converted_with_an_offset_of_seconds_keeps_its_seconds(tmp_path: Path) -> None:
    # Madrid's offset before 1901 was −00:14:44: 12:00Z is 11:45:16 there, stored to the second
    store = madrid_store(tmp_path)
    path = tmp_path / "lmt.csv"
    path.write_text("event_id,patient_id,kind,occurred_at,sex\nB,P1,birth,1900-06-01T12:00Z,male\n")
    assert run_cli("ingest", path, "--store", store, "--author", "t").exit_code == 0
    [stored] = json.loads(run_cli("events", "P1", "--store", store, "--json").stdout)["events"]
    # kept as 11:45:16 in Madrid; --json writes it as its UTC instant (RFC 3339 offsets have no seconds)
    assert (stored["occurred_at"], stored["occurred_precision"]) == ("1900-06-01T12:00:00Z", "second")


def test_a_parquet_time_in_nanoseconds_is_stored_to_the_microsecond(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    run_cli("init", "--store", store)
    path = _parquet_with_time(tmp_path, "'2009-03-01 08:00:00.123456789'::TIMESTAMP_NS")  # pandas' default
    assert run_cli("ingest", path, "--store", store, "--author", "t").exit_code == 0
    [stored] = json.loads(run_cli("events", "P001", "--store", store, "--json").stdout)["events"]
    assert stored["occurred_at"] == "2009-03-01T08:00:00.123457Z"


def test_jsonl_gives_the_same_timeline_as_csv(
    example_store: Path, empty_store: Path, example_jsonl: Path
) -> None:
    result = run_cli("ingest", example_jsonl, "--store", empty_store, "--author", "t")
    assert result.exit_code == 0, result.output
    assert current_timeline(empty_store) == current_timeline(example_store)


def test_parquet_gives_the_same_timeline_as_csv(
    example_store: Path, empty_store: Path, example_parquet: Path
) -> None:
    result = run_cli("ingest", example_parquet, "--store", empty_store, "--author", "t")
    assert result.exit_code == 0, result.output
    assert current_timeline(empty_store) == current_timeline(example_store)


def test_jsonl_of_events_already_stored_from_csv_adds_nothing(
    example_store: Path, example_jsonl: Path
) -> None:
    result = run_cli("ingest", example_jsonl, "--store", example_store, "--author", "t")
    assert result.stdout == f"{example_jsonl}: 0 events added, 14 duplicates skipped (high-water seq 14)\n"


def test_a_birth_after_events_already_stored_is_rejected(empty_store: Path, tmp_path: Path) -> None:
    weight = tmp_path / "w.csv"
    weight.write_text("event_id,patient_id,kind,occurred_at,value,unit\nw1,P8,weight,2000-01-01,20,kg\n")
    assert run_cli("ingest", weight, "--store", empty_store, "--author", "t").exit_code == 0
    birth = tmp_path / "b.csv"
    birth.write_text("event_id,patient_id,kind,occurred_at,sex\nb1,P8,birth,2005-01-01,female\n")
    before = snapshot(empty_store)
    result = run_cli("ingest", birth, "--store", empty_store, "--author", "t")
    assert result.exit_code == 6
    assert result.stderr.splitlines()[1] == (
        f"  {birth}: row 1, field occurred_at: is after the patient's first recorded event (2000-01-01): 2005-01-01"
    )
    assert snapshot(empty_store) == before


# ---- standard input and pipes -------------------------------------------------------------------


def _with_stdin(data: bytes, *args: object) -> Any:
    import io
    import sys
    from unittest import mock

    with mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(data))):
        return run_cli(*args)


def test_ingest_dash_reads_standard_input_given_its_format(empty_store: Path) -> None:
    result = _with_stdin(EXAMPLE_CSV.read_bytes(), "ingest", "-", "--format", "csv", "--store", empty_store)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<stdin>: 14 events added as batch 1")


def test_ingest_dash_without_a_format_is_a_usage_error(empty_store: Path) -> None:
    result = _with_stdin(EXAMPLE_CSV.read_bytes(), "ingest", "-", "--store", empty_store)
    assert result.exit_code == 2
    assert "<stdin> is a stream: give its format with --format csv, jsonl or parquet" in result.stderr


def test_standard_input_given_twice_is_a_usage_error_before_anything_is_written(empty_store: Path) -> None:
    """The second read of a pipe is empty: `ingest - -` committed a batch, then failed (exit 6)."""
    before = snapshot(empty_store)
    result = _with_stdin(
        EXAMPLE_CSV.read_bytes(), "ingest", "-", "-", "--format", "csv", "--store", empty_store
    )
    assert result.exit_code == 2
    assert "- (standard input) is given more than once" in result.stderr
    assert snapshot(empty_store) == before


def test_errors_in_standard_input_are_named_by_it_not_by_a_temporary_copy(empty_store: Path) -> None:
    result = _with_stdin(b"x,y\n1,2\n", "ingest", "-", "--format", "csv", "--store", empty_store)
    assert result.exit_code == 6
    assert all(line.lstrip().startswith(("error: <stdin>", "<stdin>")) for line in result.stderr.splitlines())


def test_ingest_reads_a_named_pipe(empty_store: Path, tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(EXAMPLE_CSV.read_bytes()), daemon=True)
    writer.start()
    result = run_cli("ingest", fifo, "--format", "csv", "--store", empty_store)
    writer.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert "14 events added" in result.stdout


# The insert of an ingest made to run until it is interrupted: ready() once it starts.
ENDLESS_INSERT = """
import timeline.ingest as ingest
select = ingest._insert_select
def endless(*args, **kwargs):
    ready()
    return f"SELECT * FROM ({select(*args, **kwargs)}) WHERE (SELECT sum(i) FROM range(1000000000000000) t(i)) > 0"
ingest._insert_select = endless
"""


@pytest.fixture
def new_events(tmp_path: Path) -> Path:
    path = tmp_path / "new.csv"
    path.write_text("event_id,patient_id,kind,occurred_at,value,unit\nw9,P001,weight,2008-03-01,30,kg\n")
    return path


def test_ctrl_c_during_an_ingest_says_interrupted_and_writes_nothing(
    example_store: Path, new_events: Path
) -> None:
    before = snapshot(example_store)
    result = interrupted_cli(ENDLESS_INSERT, "ingest", new_events, "--store", example_store, "--author", "t")
    assert (result.exit_code, result.stderr) == (130, "error: interrupted\n")
    assert snapshot(example_store) == before


def test_sigterm_during_an_ingest_says_terminated_exits_143_and_writes_nothing(
    example_store: Path, new_events: Path
) -> None:
    before = snapshot(example_store)
    result = interrupted_cli(
        ENDLESS_INSERT, "ingest", new_events, "--store", example_store, "--author", "t", signum=signal.SIGTERM
    )
    assert (result.exit_code, result.stderr) == (143, "error: terminated (SIGTERM)\n")
    assert snapshot(example_store) == before


# standard input read from the file named by the last argument (which the command does not see)
STDIN_FROM_LAST_ARGUMENT = """
import io, sys
sys.stdin = io.TextIOWrapper(io.BytesIO(open(sys.argv.pop(), "rb").read()))
"""


def test_sigterm_during_an_ingest_of_standard_input_removes_its_copy(
    example_store: Path, new_events: Path, tmp_path: Path
) -> None:
    """Helper 44: the copy of the patient data piped in was left in the temp directory."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = interrupted_cli(
        ENDLESS_INSERT + STDIN_FROM_LAST_ARGUMENT,
        "ingest", "-", "--format", "csv", "--store", example_store, "--author", "t", new_events,
        signum=signal.SIGTERM, env=subprocess_env(TMPDIR=str(temp)),
    )  # fmt: skip
    assert result.exit_code == 143, result.stderr
    assert list(temp.iterdir()) == []


def test_an_ingest_with_standard_output_closed_writes_and_exits_0(
    example_store: Path, new_events: Path
) -> None:
    """Helper 44: `>&-` committed the batch, then failed with a traceback (exit 1)."""
    before = len(snapshot(example_store)["events"])
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m cli.main ingest "{new_events}" --store "{example_store}" --author t >&-'],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert len(snapshot(example_store)["events"]) == before + 1


def test_an_ingest_of_standard_input_closed_reads_an_empty_file(example_store: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m cli.main ingest - --format csv --store "{example_store}" <&-'],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 6
    assert "empty file" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_during_an_ingest_with_a_progress_bar_says_interrupted_and_writes_nothing(
    example_store: Path, new_events: Path
) -> None:
    # with a bar, a thread runs each query while the main thread polls its progress: Ctrl-C
    # reaches the main thread, which closed the store under the running query (exit 70,
    # "connection is busy", or an abort)
    with_bar = """
import cli.main
import timeline.ingest as ingest
select = ingest._insert_select
ingest._insert_select = lambda *args, **kwargs: (
    f"SELECT * FROM ({select(*args, **kwargs)}) WHERE (SELECT sum(i) FROM range(1000000000000000) t(i)) > 0"
)
class Bar:
    def __init__(self, path):
        pass
    def __enter__(self):
        return lambda stage, pct: ready() if stage == "writing" else None
    def __exit__(self, *exc):
        pass
cli.main._progress = Bar
"""
    before = snapshot(example_store)
    result = interrupted_cli(with_bar, "ingest", new_events, "--store", example_store, "--author", "t")
    assert (result.exit_code, result.stderr) == (130, "error: interrupted\n")
    assert snapshot(example_store) == before


def test_a_file_name_too_long_is_a_rejected_batch_naming_the_reason(
    example_store: Path, tmp_path: Path
) -> None:
    path = tmp_path / ("a" * 300 + ".csv")
    result = run_cli("ingest", path, "--store", example_store, "--author", "t")
    # before: "internal error: OSError: [Errno 36] File name too long", exit 70
    assert (result.exit_code, result.stderr.splitlines()[1:]) == (
        6,
        [f"  {path}: file: cannot be read: File name too long"],
    )


def test_ingest_progress_never_goes_back_within_a_stage(tmp_path: Path) -> None:
    # before: each DuckDB query of a stage started its figure again ("checking 100%" → "27%")
    seen: list[tuple[str, float]] = []
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, EXAMPLE_CSV, author="t", progress=lambda stage, pct: seen.append((stage, pct)))
    stages = list(dict.fromkeys(stage for stage, _ in seen))
    by_stage = {stage: [pct for s, pct in seen if s == stage] for stage in stages}
    assert all(pcts == sorted(pcts) and pcts[-1] == 100.0 for pcts in by_stage.values()), by_stage
    assert stages == ["reading", "checking", "writing", "sealing"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_shows_once_an_ingest_has_lasted_a_second_whatever_the_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: only for files over 5 MB (a 3.6 MB Parquet file of 616k events: 13 s, no bar)
    from cli.main import _progress

    monkeypatch.setattr(sys, "stderr", _Terminal())
    now = [0.0]
    bar = _progress(EXAMPLE_CSV)
    bar.clock = lambda: now[0]
    with bar as update:
        assert update is not None
        update("reading", 10.0)
        shown_at_first = bar.bar is not None
        now[0] = 1.5
        update("reading", 20.0)
        shown_later = bar.bar is not None
    assert (shown_at_first, shown_later) == (False, True)


def _ingest_text(store: Path, path: Path, text: str) -> tuple[Path, Any]:
    """``text`` written to ``path`` and ingested into ``store``: the file and the command's result."""
    path.write_text(text, encoding="utf-8")
    return path, run_cli("ingest", path, "--store", store, "--author", "t")


def test_a_weight_in_pounds_written_lb_is_refused_naming_ucums_spelling(
    empty_store: Path, tmp_path: Path
) -> None:
    f, result = _ingest_text(
        empty_store, tmp_path / "w.csv", "patient_id,kind,occurred_at,value,unit\nP,weight,2009-03-01,88,lb\n"
    )
    assert result.exit_code == 6
    assert (
        f"{f}: row 1, field unit: unit 'lb' cannot be converted to 'kg' for body weight: unknown unit symbol 'lb'; UCUM writes it '[lb_av]'"
        in result.stderr
    )


def test_a_semicolon_separated_file_is_refused_saying_it_is_not_comma_separated(
    empty_store: Path, tmp_path: Path
) -> None:
    _, result = _ingest_text(
        empty_store,
        tmp_path / "eu.csv",
        "patient_id;kind;occurred_at;value;unit\nP;weight;2009-03-01;40,5;kg\n",
    )
    assert result.exit_code == 6
    assert (
        "the file is separated by semicolons; timeline reads CSV separated by commas, with decimal points"
        in result.stderr
    )
    assert run_cli("patients", "--store", empty_store, "--json").stdout.count("patient_id") == 0


def test_a_file_that_cannot_be_read_is_rejected_as_the_ingest_rejects_files(
    example_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 6 naming the file, not Typer's usage error (exit 2). Tests run as root, who can read
    every file: opening it is made to fail as it does for a user without permission."""
    locked = tmp_path / "locked.csv"
    locked.write_text("patient_id,kind,occurred_at\nP9,death,2009-03-02\n", encoding="utf-8")
    real_open = Path.open

    def no_permission(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", no_permission)
    before = snapshot(example_store)
    result = run_cli("ingest", locked, "--store", example_store, "--author", "t")
    assert result.exit_code == 6
    assert f"{locked}: file: cannot be read: Permission denied" in result.stderr
    assert snapshot(example_store) == before


def _ingest_deaths(store: Path, tmp_path: Path, text: str, name: str = "in.csv") -> Any:
    """Rows of deaths and weights, under their header, ingested: the command's result."""
    return _ingest_text(store, tmp_path / name, "patient_id,kind,occurred_at,reason,value,unit\n" + text)[1]


def test_an_event_on_a_day_after_the_patients_death_is_rejected(example_store: Path, tmp_path: Path) -> None:
    """Helper 38: a weight a year after the death was stored."""
    result = _ingest_deaths(
        example_store, tmp_path, "P11,death,2007-01-01,x,,\nP11,weight,2008-01-01,,12,kg\n"
    )
    assert result.exit_code == 6
    assert "row 2, field occurred_at: is after the patient's death (2007-01-01): 2008-01-01" in result.stderr


def test_an_event_later_on_the_day_of_death_and_a_later_end_of_follow_up_are_accepted(
    example_store: Path, tmp_path: Path
) -> None:
    text = "P12,death,2008-03-01,y,,\nP12,weight,2008-03-01T10:00,,12,kg\nP12,end_of_follow_up,2008-12-31,registry closed,,\n"
    assert _ingest_deaths(example_store, tmp_path, text).exit_code == 0


def test_two_death_dates_in_one_file_are_rejected(example_store: Path, tmp_path: Path) -> None:
    result = _ingest_deaths(example_store, tmp_path, "P11,death,2007-01-01,x,,\nP11,death,2008-02-01,y,,\n")
    assert result.exit_code == 6
    assert (
        "row 2, field occurred_at: patient 'P11' has more than one death date in this file" in result.stderr
    )


def test_a_death_date_other_than_the_stored_one_is_rejected(example_store: Path, tmp_path: Path) -> None:
    assert _ingest_deaths(example_store, tmp_path, "P12,death,2008-03-01,y,,\n").exit_code == 0
    before = snapshot(example_store)
    result = _ingest_deaths(example_store, tmp_path, "P12,death,2008-04-01,z,,\n", "again.csv")
    assert result.exit_code == 6
    assert "patient 'P12' already has death date 2008-03-01" in result.stderr
    assert snapshot(example_store) == before


def test_a_death_before_the_day_of_a_stored_event_is_rejected(example_store: Path, tmp_path: Path) -> None:
    result = _ingest_deaths(example_store, tmp_path, "P001,death,2008-01-01,x,,\n")
    assert result.exit_code == 6
    assert "is before the patient's last recorded event (" in result.stderr


def test_a_signal_inside_an_import_is_known_as_such(tmp_path: Path) -> None:
    """Helper 45: SIGTERM raised inside DuckDB's import aborted the process (exit 134); the
    handler sends it again once the import is over, so it must tell an import apart."""
    from cli.exits import _importing

    (tmp_path / "probe_module_for_import.py").write_text(
        "import sys\nfrom cli.exits import _importing\nSEEN = _importing(sys._getframe())\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import probe_module_for_import  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    assert (probe_module_for_import.SEEN, _importing(sys._getframe())) == (True, False)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_more_errors_than_listed_are_counted_truly(suffix: str, tmp_path: Path) -> None:
    """Helper 47 #7: 1,500 bad rows were reported as "(1001 errors)", the 1,001st being a
    line "… and 500 more errors" counted as an error, and "… 951 more (use --json for all)";
    --json held 1,001 entries."""
    bad = tmp_path / f"many.{suffix}"
    if suffix == "csv":
        lines = ["event_id,patient_id,kind,occurred_at,code,value,unit"]
        lines += [f"e{i},P1,lab,2008-01-10,1988-5,lots,mg/L" for i in range(1500)]
    else:
        lines = ["[1]"] * 1500
    bad.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s.duckdb"
    Store.create(store).close()
    result = run_cli("ingest", "--store", store, bad)
    assert result.exit_code == 6
    assert f"{bad}: batch rejected, nothing written (1,500 errors, the first 1,000 listed)" in result.stderr
    assert result.stderr.rstrip().endswith("  … 1,450 more (--json lists the first 1,000)")
    payload = json.loads(run_cli("ingest", "--store", store, bad, "--json").stdout)
    assert (len(payload["rejected"]["errors"]), payload["rejected"]["errors_found"]) == (1000, 1500)
    assert "(1,500 errors, the first 1,000 listed)" in payload["error"]["message"]
