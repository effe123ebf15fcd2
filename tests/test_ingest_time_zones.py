"""A time given without a UTC offset is a clock time in the store's zone (set once, by
``timeline init --timezone``; UTC by default), in CSV, JSON Lines and Parquet alike, and never
in the zone of the machine that ingests it; one with an offset is converted into the store's
zone. The rule is said where it is chosen (``init``) and by ``ingest --help`` (helper 81)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.support import run_cli, subprocess_env

HEADER = "event_id,patient_id,kind,occurred_at,value,unit\n"


def store_in(tmp_path: Path, zone: str | None) -> Path:
    store = tmp_path / "s.duckdb"
    args = ["init", "--store", store] + (["--timezone", zone] if zone else [])
    assert run_cli(*args).exit_code == 0
    return store


def occurred(store: Path) -> list[str]:
    data = json.loads(run_cli("events", "P1", "--store", store, "--json").stdout)
    return [e["occurred_at"] for e in data["events"]]


def ingest(store: Path, path: Path) -> None:
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 0, result.output


def test_a_csv_time_without_an_offset_is_a_clock_time_in_the_store_zone(tmp_path: Path) -> None:
    store = store_in(tmp_path, "Europe/Madrid")
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "w1,P1,weight,2020-03-01T10:00,20,kg\n", encoding="utf-8")
    ingest(store, path)
    assert occurred(store) == ["2020-03-01T10:00:00+01:00"]


def test_a_csv_time_without_an_offset_in_a_default_store_is_read_as_utc(tmp_path: Path) -> None:
    store = store_in(tmp_path, None)
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "w1,P1,weight,2020-03-01T10:00,20,kg\n", encoding="utf-8")
    ingest(store, path)
    assert occurred(store) == ["2020-03-01T10:00:00Z"]


def test_a_json_lines_time_without_an_offset_is_a_clock_time_in_the_store_zone(tmp_path: Path) -> None:
    store = store_in(tmp_path, "Europe/Madrid")
    path = tmp_path / "w.jsonl"
    row = {"event_id": "w1", "patient_id": "P1", "kind": "weight", "occurred_at": "2020-07-01T10:00"}
    path.write_text(json.dumps({**row, "value": 20, "unit": "kg"}) + "\n", encoding="utf-8")
    ingest(store, path)
    assert occurred(store) == ["2020-07-01T10:00:00+02:00"]


def test_a_parquet_timestamp_without_a_zone_is_a_clock_time_in_the_store_zone(tmp_path: Path) -> None:
    store = store_in(tmp_path, "Europe/Madrid")
    path = tmp_path / "w.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            f"""COPY (SELECT 'w1' AS event_id, 'P1' AS patient_id, 'weight' AS kind,
                             TIMESTAMP '2020-03-01 10:00:00' AS occurred_at, 20.0 AS value, 'kg' AS unit)
                TO '{path}' (FORMAT parquet)"""
        )
    finally:
        con.close()
    ingest(store, path)
    assert occurred(store) == ["2020-03-01T10:00:00+01:00"]


def test_a_time_with_an_offset_beside_one_without_is_converted_and_the_other_kept(tmp_path: Path) -> None:
    store = store_in(tmp_path, "Europe/Madrid")
    path = tmp_path / "w.csv"
    path.write_text(
        HEADER + "w1,P1,weight,2020-03-01T10:00,20,kg\nw2,P1,weight,2020-03-02T10:00Z,20,kg\n",
        encoding="utf-8",
    )
    ingest(store, path)
    assert occurred(store) == ["2020-03-01T10:00:00+01:00", "2020-03-02T11:00:00+01:00"]


def test_the_machines_time_zone_does_not_change_a_time_without_an_offset(tmp_path: Path) -> None:
    store = store_in(tmp_path, "Europe/Madrid")
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "w1,P1,weight,2020-03-01T10:00,20,kg\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(path), "--store", str(store), "--author", "t"],
        env=subprocess_env(TZ="America/New_York"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert occurred(store) == ["2020-03-01T10:00:00+01:00"]


def test_init_says_how_a_time_without_an_offset_is_read(tmp_path: Path) -> None:
    result = run_cli("init", "--store", tmp_path / "s.duckdb", "--timezone", "Europe/Madrid")
    assert (
        "(time zone Europe/Madrid: a time without a UTC offset is read as a clock time there)"
        in result.stdout
    )


def test_ingest_help_says_how_a_time_without_an_offset_is_read() -> None:
    text = " ".join(run_cli("ingest", "--help").stdout.split())
    assert "A time without a UTC offset (2009-03-01T10:00) is a clock time in the store's zone" in text
