"""Every problem of a file in one pass, and the column or key a near miss meant (helper 72):
a JSON Lines file's unknown key no longer hides the other lines' value errors, and a header in
capitals or misspelt is told the column it means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timeline import events
from timeline.errors import IngestError
from timeline.ingest import _closest, append_rows, ingest_file
from timeline.store import Store

LAB = {
    "patient_id": "P1",
    "kind": "lab",
    "occurred_at": "2009-03-01",
    "code": "1988-5",
    "value": 4,
    "unit": "mg/L",
}


def jsonl(tmp_path: Path, *lines: dict[str, object] | str) -> Path:
    path = tmp_path / "f.jsonl"
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8"
    )
    return path


def rejected(store: Store, path: Path) -> list[str]:
    with pytest.raises(IngestError) as caught:
        ingest_file(store, path, author="t")
    return [str(e) for e in caught.value.errors]


def test_an_unknown_key_on_one_line_does_not_hide_a_bad_value_on_another(
    store: Store, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, {**LAB, "value": "high"}, {**LAB, "colour": "red"})
    assert rejected(store, path) == [
        "row 1, field value: not a number: 'high'",
        "row 2, field colour: unknown field",
    ]


def test_an_unknown_key_is_named_on_every_line_that_has_it(store: Store, tmp_path: Path) -> None:
    path = jsonl(tmp_path, {**LAB, "colour": "red"}, LAB, {**LAB, "colour": "blue"})
    assert rejected(store, path) == [
        "row 1, field colour: unknown field",
        "row 3, field colour: unknown field",
    ]


def test_the_other_fields_of_a_line_with_an_unknown_key_are_checked(store: Store, tmp_path: Path) -> None:
    path = jsonl(tmp_path, {**LAB, "colour": "red", "occurred_at": "2009-13-01"})
    assert [e.split(":")[0] for e in rejected(store, path)] == [
        "row 1, field colour",
        "row 1, field occurred_at",
    ]


def test_a_misspelt_key_is_not_also_reported_as_the_missing_field_it_meant(
    store: Store, tmp_path: Path
) -> None:
    row = {k: v for k, v in LAB.items() if k != "value"} | {"valeu": 4}
    assert rejected(store, jsonl(tmp_path, row)) == [
        "row 1, field valeu: unknown field (did you mean 'value'?)"
    ]


def test_an_object_of_unknown_keys_only_is_named_for_its_keys_not_called_empty(
    store: Store, tmp_path: Path
) -> None:
    errors = rejected(store, jsonl(tmp_path, LAB, {"colour": "red"}))
    assert errors[0] == "row 2, field colour: unknown field" and not any("empty" in e for e in errors)


def test_a_line_that_is_not_json_does_not_hide_a_bad_value_on_another(store: Store, tmp_path: Path) -> None:
    path = jsonl(tmp_path, "{not json", {**LAB, "value": "high"})
    assert rejected(store, path) == ["row 1: not valid JSON", "row 2, field value: not a number: 'high'"]


def test_a_key_given_twice_does_not_hide_a_bad_value_on_another_line(store: Store, tmp_path: Path) -> None:
    twice = '{"patient_id": "P1", "patient_id": "P2", "kind": "birth", "occurred_at": "2000-01-01"}'
    path = jsonl(tmp_path, twice, {**LAB, "value": "high"})
    assert rejected(store, path) == [
        "row 1, field patient_id: given more than once in the object",
        "row 2, field value: not a number: 'high'",
    ]


def test_a_file_rejected_for_an_unknown_key_and_a_value_writes_nothing(store: Store, tmp_path: Path) -> None:
    rejected(store, jsonl(tmp_path, LAB, {**LAB, "value": "high"}, {**LAB, "colour": "red"}))
    assert store.high_water() == 0


def test_rows_given_in_python_report_every_unknown_key_with_the_bad_values(store: Store) -> None:
    rows = [{**LAB, "value": "high"}, {**LAB, "colour": "red"}, {**LAB, "weather": "dry"}]
    with pytest.raises(IngestError) as caught:
        append_rows(store, rows, author="t")
    assert [str(e) for e in caught.value.errors] == [
        "row 1, field value: not a number: 'high'",
        "row 2, field colour: unknown field",
        "row 3, field weather: unknown field",
    ]


# ---- the column a header means --------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "meant"),
    [("PATIENT_ID", "patient_id"), ("Patient ID", "patient_id"), ("patient-id", "patient_id"),
     ("Occured_At", "occurred_at"), ("valeu", "value")],
)  # fmt: skip
def test_a_near_miss_of_a_column_name_is_matched_to_it(written: str, meant: str) -> None:
    assert _closest(written, events.NATIVE_COLUMNS) == meant


def test_a_name_like_no_column_is_matched_to_none() -> None:
    assert _closest("colour", events.NATIVE_COLUMNS) is None


@settings(max_examples=200, deadline=None)
@given(column=st.sampled_from(events.NATIVE_COLUMNS), flips=st.lists(st.booleans(), min_size=20, max_size=20))
def test_every_column_written_in_any_mix_of_case_is_matched_to_itself(column: str, flips: list[bool]) -> None:
    written = "".join(c.upper() if f else c for c, f in zip(column, flips * 2, strict=False))
    assert _closest(written, events.NATIVE_COLUMNS) == column


def test_a_header_in_capitals_is_told_the_column_in_lower_case(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("PATIENT_ID,kind,occurred_at\nP1,diagnosis,2009-03-01\n", encoding="utf-8")
    assert rejected(store, path)[0] == (
        "field PATIENT_ID: unknown column (did you mean 'patient_id'? it is written in lower case)"
    )


def test_a_missing_required_column_names_the_header_column_that_spells_it_otherwise(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("patient_id,Kind,occurred_at\nP1,diagnosis,2009-03-01\n", encoding="utf-8")
    assert (
        rejected(store, path)[-1]
        == "field kind: required column is missing (the header has 'Kind': rename it 'kind')"
    )


def test_a_misspelt_parquet_column_in_capitals_is_told_the_column(store: Store, tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "f.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT 'P1' AS patient_id, 'diagnosis' AS kind, '2009-03-01' AS OCCURRED_AT) TO '{path}' (FORMAT parquet)"
    )
    assert rejected(store, path)[0] == (
        "field OCCURRED_AT: unknown column (did you mean 'occurred_at'? it is written in lower case)"
    )
