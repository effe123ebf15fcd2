"""A file that gives some times with a UTC offset and others without one (an export that
dropped the offset of some rows) is ingested as before, each time read by the rule of README
"Time zones", and a note says how many rows give each, names the first row and field of each,
and that those without one were read in the store's zone. A date alone is a day, not a time
without an offset (helper 86)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import run_cli
from timeline.ingest import ingest_file
from timeline.store import Store

HEAD = "patient_id,kind,occurred_at,ended_at,value,unit\n"
FINDINGS = "patient_id,kind,code,occurred_at,ended_at\n"


def weights(*times: str, first: int = 1) -> str:
    """CSV rows of weights of P1 at the given times, of 20 kg plus their number (from ``first``)."""
    return "".join(f"P1,weight,{t},,{20 + i},kg\n" for i, t in enumerate(times, start=first))


def notes_of(tmp_path: Path, body: str, zone: str = "Europe/Madrid", name: str = "mixed.csv") -> list[str]:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    store = Store.create(tmp_path / f"{name}.duckdb", timezone=zone)
    try:
        return ingest_file(store, path, author="t").notes
    finally:
        store.close()


def mixed_notes(notes: list[str]) -> list[str]:
    return [n for n in notes if "with a UTC offset and some without" in n]


def test_a_csv_file_of_times_with_and_without_an_offset_is_noted_with_counts_and_first_rows(
    tmp_path: Path,
) -> None:
    body = HEAD + weights(
        "2020-03-01T10:00", "2020-03-02T10:00+02:00", "2020-03-03T10:00Z", "2020-03-04T09:30"
    )
    assert mixed_notes(notes_of(tmp_path, body)) == [
        f"{tmp_path / 'mixed.csv'} gives some times with a UTC offset and some without: 2 rows with one (the first: row 2, occurred_at 2020-03-02T10:00+02:00), 2 without "
        "(the first: row 1, occurred_at 2020-03-01T10:00). Those without one are read as clock times in "
        "the store's zone, Europe/Madrid: an export that dropped the offset of some times? If they were "
        "meant in another zone, they are stored at other instants: retract those events and ingest them "
        "with their offsets"
    ]


def test_a_json_lines_file_of_times_with_and_without_an_offset_is_noted(tmp_path: Path) -> None:
    rows = [
        {"patient_id": "P1", "kind": "weight", "occurred_at": t, "value": 20, "unit": "kg"}
        for t in ("2020-03-01T10:00:00+01:00", "2020-03-02 10:00:00")
    ]
    notes = mixed_notes(notes_of(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), name="mixed.jsonl"))
    assert len(notes) == 1
    assert (
        "1 row with one (the first: row 1, occurred_at 2020-03-01T10:00:00+01:00), 1 without (the first: row 2, occurred_at 2020-03-02 10:00:00)"
        in notes[0]
    )


def test_the_note_names_the_zone_of_a_default_store_utc(tmp_path: Path) -> None:
    body = HEAD + weights("2020-03-01T10:00", "2020-03-02T10:00+02:00")
    (note,) = mixed_notes(notes_of(tmp_path, body, zone="UTC"))
    assert "read as clock times in the store's zone, UTC:" in note


def test_an_ended_at_without_an_offset_is_named_by_its_field(tmp_path: Path) -> None:
    body = FINDINGS + (
        "P1,finding,fever,2020-03-01T10:00+01:00,\nP1,finding,fever,2020-03-02T08:00+01:00,2020-03-02T20:00\n"
    )
    (note,) = mixed_notes(notes_of(tmp_path, body))
    assert "2 rows with one (the first: row 1, occurred_at 2020-03-01T10:00+01:00)" in note
    assert "1 without (the first: row 2, ended_at 2020-03-02T20:00)" in note


def test_a_file_of_times_all_with_an_offset_is_not_noted(tmp_path: Path) -> None:
    body = HEAD + weights("2020-03-01T10:00+01:00", "2020-03-02T10:00Z", "2020-03-03T10:00:30-0500")
    assert mixed_notes(notes_of(tmp_path, body)) == []


def test_a_file_of_times_all_without_an_offset_is_not_noted(tmp_path: Path) -> None:
    body = HEAD + weights("2020-03-01T10:00", "2020-03-02 10:00:00", "2020-03-03T10:00:00.5")
    assert mixed_notes(notes_of(tmp_path, body)) == []


def test_dates_beside_times_with_an_offset_are_not_noted(tmp_path: Path) -> None:
    body = FINDINGS + (
        "P1,finding,fever,2020-03-01,\nP1,finding,fever,2020-03-02T10:00+01:00,2020-03-04\n"
        "P1,finding,fever,2020-03-03,2020-03-05T10:00+01:00\n"
    )
    assert mixed_notes(notes_of(tmp_path, body)) == []


def test_dates_beside_times_without_an_offset_are_not_noted(tmp_path: Path) -> None:
    body = HEAD + weights("2020-03-01", "2020-03-02T10:00", "2020-03-03")
    assert mixed_notes(notes_of(tmp_path, body)) == []


def test_a_parquet_file_of_zoned_times_beside_a_text_column_of_dates_is_not_noted(tmp_path: Path) -> None:
    path = tmp_path / "w.parquet"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"""COPY (SELECT 'P1' AS patient_id, 'finding' AS kind, 'fever' AS code,
                             TIMESTAMPTZ '2020-03-01 10:00:00+00' + to_days(i::INTEGER) AS occurred_at,
                             '2020-04-01' AS ended_at FROM range(3) t(i))
                TO '{path}' (FORMAT parquet)"""
        )
    finally:
        con.close()
    store = Store.create(tmp_path / "s.duckdb", timezone="Europe/Madrid")
    try:
        result = ingest_file(store, path, author="t")
    finally:
        store.close()
    assert result.added == 3
    assert mixed_notes(result.notes) == []


def test_the_note_is_in_the_json_document_of_ingest(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    assert run_cli("init", "--store", store, "--timezone", "Europe/Madrid").exit_code == 0
    path = tmp_path / "mixed.csv"
    path.write_text(HEAD + weights("2020-03-01T10:00", "2020-03-02T10:00+02:00"), encoding="utf-8")
    result = run_cli("ingest", path, "--store", store, "--author", "t", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [n for n in document["notes"] if str(path) + " gives some times with a UTC offset" in n]
    assert "notes" not in document["batches"][0]


def stored(store: Store) -> list[tuple[object, ...]]:
    return store.con.execute(
        """SELECT event_id, occurred_at, occurred_precision, ended_at, ended_precision, value, content_hash
           FROM events ORDER BY event_id"""
    ).fetchall()


def test_a_mixed_file_stores_the_same_events_as_its_two_halves_ingested_apart(tmp_path: Path) -> None:
    zoned = ["2020-03-02T10:00+02:00", "2020-10-24T22:30Z"]
    bare = ["2020-03-01T10:00", "2020-03-03T10:00:15"]
    together = tmp_path / "mixed.csv"
    together.write_text(HEAD + weights(*zoned, *bare), encoding="utf-8")
    one, other = tmp_path / "zoned.csv", tmp_path / "bare.csv"
    one.write_text(HEAD + weights(*zoned), encoding="utf-8")
    other.write_text(HEAD + weights(*bare, first=3), encoding="utf-8")
    a = Store.create(tmp_path / "a.duckdb", timezone="Europe/Madrid")
    b = Store.create(tmp_path / "b.duckdb", timezone="Europe/Madrid")
    try:
        ingest_file(a, together, author="t")
        ingest_file(b, one, author="t")
        ingest_file(b, other, author="t")
        assert stored(a) == stored(b)
    finally:
        a.close()
        b.close()


TIMES = st.sampled_from(["date", "bare", "zoned", "none"])
SHOWN = {"date": "2020-03-{d:02d}", "bare": "2020-03-{d:02d}T10:00", "zoned": "2020-03-{d:02d}T10:00+01:00"}


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.tuples(TIMES.filter(lambda t: t != "none"), TIMES), min_size=1, max_size=8))
def test_the_note_counts_the_rows_with_and_without_an_offset_dates_apart(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]
) -> None:
    body = FINDINGS + "".join(
        f"P1,finding,fever,{SHOWN[occ].format(d=i)},{SHOWN[end].format(d=i + 10) if end != 'none' else ''}\n"
        for i, (occ, end) in enumerate(rows, start=1)
    )
    notes = mixed_notes(notes_of(tmp_path_factory.mktemp("m"), body))
    n_zoned = sum("zoned" in r for r in rows)
    n_bare = sum("bare" in r for r in rows)
    if n_zoned and n_bare:
        (note,) = notes
        assert f"{n_zoned:,} row{'s' if n_zoned != 1 else ''} with one (the first: row " in note
        assert f"), {n_bare:,} without (the first: row " in note
    else:
        assert notes == []
