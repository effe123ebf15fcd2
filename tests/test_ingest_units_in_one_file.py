"""One file giving an event twice, in two units (CRP 1 mg/dL on one row, 10 mg/L on another,
under one event id): the same quantities are one event, its first row written and the other
skipped as a duplicate with a note naming both rows; any real difference stays a conflict
whose message names the fields and both rows (helper 81)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from timeline.errors import IngestError
from timeline.ingest import ingest_file
from timeline.store import Store

HEADER = "event_id,patient_id,kind,occurred_at,code,value,unit,ref_low,ref_high,note\n"
CRP = "c1,P1,lab,2009-03-01,1988-5"


def csv_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def ingest(store: Store, path: Path) -> Any:
    return ingest_file(store, path, author="t")


def rejected(store: Store, path: Path) -> list[str]:
    with pytest.raises(IngestError) as caught:
        ingest(store, path)
    return [str(e) for e in caught.value.errors]


def test_one_event_in_two_units_in_one_file_is_written_once(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,0,0.5,", f"{CRP},10,mg/L,0,5,")
    result = ingest(store, path)
    assert (result.added, result.duplicates) == (1, 1)


def test_the_first_row_of_an_event_in_two_units_is_the_one_stored(store: Store, tmp_path: Path) -> None:
    ingest(store, csv_file(tmp_path, f"{CRP},1,mg/dL,0,0.5,", f"{CRP},10,mg/L,0,5,"))
    stored = store.con.execute("SELECT orig_value, orig_unit, value, unit, source_row FROM events").fetchall()
    assert stored == [(1.0, "mg/dL", 10.0, "mg/L", 1)]


def test_the_note_names_both_rows_of_an_event_in_two_units(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, f"{CRP},1,mg/dL,,,", "c2,P1,lab,2009-03-02,1988-5,3,mg/L,,,", f"{CRP},10,mg/L,,,"
    )
    (note,) = ingest(store, path).notes
    assert "row 3: c1, 10 mg/L = 1 mg/dL in row 1" in note


def test_an_event_in_three_units_in_one_file_is_written_once(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10,mg/L,,,", f"{CRP},0.01,g/L,,,")
    assert (ingest(store, path).added, store.high_water()) == (1, 1)


def test_the_file_ingested_again_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10,mg/L,,,")
    ingest(store, path)
    again = ingest(store, path)
    assert (again.added, again.duplicates) == (0, 2)


def test_a_value_in_two_units_that_is_not_exactly_equal_is_a_conflict(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10.01,mg/L,,,")
    errors = rejected(store, path)
    assert (
        "row 2, field event_id: event id 'c1' also appears in row 1 with different content: value: "
        in errors[1]
    )


def test_a_conflict_in_one_file_says_what_the_other_unit_gives(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10.01,mg/L,,,")
    errors = rejected(store, path)
    assert errors[1].endswith(
        "value: row 1 1 mg/dL, row 2 10.01 mg/L (that is 1.001 mg/dL, not the same quantity)"
    )


def test_a_reference_range_left_in_the_first_unit_is_a_conflict_in_one_file(
    store: Store, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,0,0.5,", f"{CRP},10,mg/L,0,0.5,")
    assert (
        "ref_high: row 1 0.5 mg/dL, row 2 0.5 mg/L (that is 0.05 mg/dL, not the same quantity)"
        in rejected(store, path)[1]
    )


def test_another_field_changed_beside_the_other_unit_is_a_conflict_in_one_file(
    store: Store, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10,mg/L,,,again")
    assert "note: row 1 empty, row 2 again" in rejected(store, path)[1]


def test_a_conflict_in_one_file_writes_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError):
        ingest(store, csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10.01,mg/L,,,"))
    assert store.high_water() == 0


def test_a_third_row_that_differs_conflicts_with_both_rows_in_two_units(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10,mg/L,,,", f"{CRP},11,mg/L,,,")
    errors = rejected(store, path)
    assert [e.split(":")[0] for e in errors] == [
        "row 1, field event_id",
        "row 2, field event_id",
        "row 3, field event_id",
    ]


def test_a_censored_value_in_two_units_in_one_file_is_one_event(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},<0.5,mg/dL,,,", f"{CRP},<5,mg/L,,,")
    assert ingest(store, path).added == 1


def test_a_censored_and_an_exact_value_in_one_file_are_a_conflict(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, f"{CRP},<0.5,mg/dL,,,", f"{CRP},5,mg/L,,,")
    with pytest.raises(IngestError):
        ingest(store, path)


def test_a_dose_in_two_units_in_one_file_is_one_event(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "doses.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,drug,dose,dose_unit,route,frequency\n"
        "d1,P1,medication_start,2009-03-01,anakinra,100,mg,sc,daily\n"
        "d1,P1,medication_start,2009-03-01,anakinra,0.1,g,sc,daily\n",
        encoding="utf-8",
    )
    assert (ingest(store, path).added, store.high_water()) == (1, 1)


def test_a_triglyceride_in_mmol_and_its_exact_mg_per_dl_in_one_file_is_one_event(
    store: Store, tmp_path: Path
) -> None:
    # 885.7 g/mol: 1 mmol/L is 88.57 mg/dL exactly
    tg = "t1,P1,lab,2009-03-01,2571-8"
    assert ingest(store, csv_file(tmp_path, f"{tg},1,mmol/L,,,", f"{tg},88.57,mg/dL,,,")).added == 1


def test_one_event_in_two_units_in_a_json_lines_file_is_written_once(store: Store, tmp_path: Path) -> None:
    base = {
        "event_id": "c1",
        "patient_id": "P1",
        "kind": "lab",
        "occurred_at": "2009-03-01",
        "code": "1988-5",
    }
    path = tmp_path / "labs.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({**base, **q}) for q in ({"value": 1, "unit": "mg/dL"}, {"value": 10, "unit": "mg/L"})
        ),
        encoding="utf-8",
    )
    result = ingest(store, path)
    assert (result.added, result.duplicates) == (1, 1)


def test_one_event_in_two_units_in_a_parquet_file_is_written_once(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "labs.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            f"""COPY (SELECT * FROM (VALUES ('c1', 'P1', 'lab', '2009-03-01', '1988-5', 1.0, 'mg/dL'),
                                            ('c1', 'P1', 'lab', '2009-03-01', '1988-5', 10.0, 'mg/L'))
                      t(event_id, patient_id, kind, occurred_at, code, value, unit))
                TO '{path}' (FORMAT parquet)"""
        )
    finally:
        con.close()
    assert ingest(store, path).added == 1


def test_an_event_in_two_units_in_one_file_that_the_store_has_adds_only_the_store_note(
    store: Store, tmp_path: Path
) -> None:
    ingest(store, csv_file(tmp_path, f"{CRP},1,mg/dL,,,"))
    (note,) = ingest(store, csv_file(tmp_path, f"{CRP},1,mg/dL,,,", f"{CRP},10,mg/L,,,")).notes
    assert "as stored (seq 1)" in note
