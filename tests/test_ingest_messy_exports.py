"""Files as hospital exports come: line endings of two systems in one file, cells padded with
tabs, control characters, look-alike patient ids, unit spellings of every habit (helper 50's
audit). Each test writes a small file, ingests it through the CLI and looks at one outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.output import visible
from tests.support import CliResult, raw_connection, run_cli, snapshot


@pytest.fixture
def store(store_path: Path) -> Path:
    run_cli("init", "--store", store_path)
    return store_path


def ingest(store: Path, path: Path, data: str | bytes, *more: str) -> CliResult:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return run_cli("ingest", path, "--store", store, "--author", "t", *more)


def events_of(store: Path, patient: str) -> list[dict[str, Any]]:
    result = run_cli("events", patient, "--store", store, "--json")
    assert result.exit_code == 0, result.output
    events: list[dict[str, Any]] = json.loads(result.stdout)["events"]
    return events


def parquet(tmp_path: Path, columns: str) -> Path:
    """A one-row Parquet file of the SQL ``columns`` (``'P' AS patient_id, …``)."""
    path = tmp_path / "d.parquet"
    with raw_connection(tmp_path / "scratch.duckdb") as con:
        con.execute(f"COPY (SELECT {columns}) TO '{path}' (FORMAT parquet)")
    return path


HEAD = "patient_id,kind,occurred_at,value,unit,note"


# ---- line endings and CSV structure (HIGH 1, MEDIUM 8) -----------------------------------


def test_an_lf_header_on_crlf_rows_is_read(store: Path, tmp_path: Path) -> None:
    data = f"{HEAD}\nM1,weight,2020-01-01,20,kg,a\r\nM1,weight,2020-01-02,21,kg,b\r\n"
    result = ingest(store, tmp_path / "m.csv", data)
    assert (result.exit_code, [e["value"] for e in events_of(store, "M1")]) == (0, [20, 21])


def test_one_lf_line_in_a_crlf_file_is_read(store: Path, tmp_path: Path) -> None:
    data = "patient_id,kind,occurred_at,value,unit\r\nM1,weight,2020-01-01,20,kg\r\nM1,weight,2020-01-02,21,kg\nM1,weight,2020-01-03,22,kg\r\n"
    result = ingest(store, tmp_path / "m.csv", data)
    assert (result.exit_code, len(events_of(store, "M1"))) == (0, 3)


def test_a_quoted_note_over_two_lines_keeps_its_line_break_in_a_file_of_mixed_endings(
    store: Path, tmp_path: Path
) -> None:
    data = f'{HEAD}\nM1,weight,2020-01-01,20,kg,"a\r\nb"\r\nM1,weight,2020-01-02,21,kg,"c\nd"\n'
    ingest(store, tmp_path / "m.csv", data)
    assert [e["note"] for e in events_of(store, "M1")] == ["a\r\nb", "c\nd"]


def test_a_bad_value_in_a_file_of_mixed_endings_is_named_by_its_row_and_line(
    store: Path, tmp_path: Path
) -> None:
    """Was ``row 1: line 2 is not valid CSV: y"`` (helper 50's crlfq.csv)."""
    data = f'{HEAD}\nP,weight,2020-01-01,20,kg,"x\r\ny"\r\nP,weight,2020-01-02,-1,kg,\r\n'
    result = ingest(store, tmp_path / "m.csv", data)
    assert result.stderr.splitlines()[1:] == [
        f"  {tmp_path / 'm.csv'}: row 2 (line 4), field value: value -1 kg is outside the plausible range 0.2–300 kg for body weight"
    ]


def test_a_file_of_mixed_endings_that_is_refused_leaves_the_store_unchanged(
    store: Path, tmp_path: Path
) -> None:
    before = snapshot(store)
    data = "patient_id,kind,occurred_at,value,unit\nM1,weight,2020-01-01,20,kg\r\nM1,weight,2020-01-02\r\n"
    result = ingest(store, tmp_path / "m.csv", data)
    assert (result.exit_code, snapshot(store)) == (6, before)


# ---- trimming (HIGH 3) --------------------------------------------------------------------


def stored(store: Path, column: str) -> list[Any]:
    with raw_connection(store, read_only=True) as con:
        return [r[0] for r in con.execute(f"SELECT {column} FROM events ORDER BY seq").fetchall()]


def test_a_quoted_drug_ending_in_a_tab_is_stored_trimmed(store: Path, tmp_path: Path) -> None:
    data = (
        'patient_id,kind,occurred_at,drug,dose,dose_unit\nP,medication_start,2020-01-01,"anakinra\t",100,mg\n'
    )
    ingest(store, tmp_path / "d.csv", data)
    assert stored(store, "drug") == ["anakinra"]


def test_a_patient_id_between_tabs_and_line_breaks_in_json_lines_is_stored_trimmed(
    store: Path, tmp_path: Path
) -> None:
    row = {
        "patient_id": "\tP050\r\n",
        "kind": "weight",
        "occurred_at": "2020-01-01",
        "value": 20,
        "unit": "kg",
    }
    ingest(store, tmp_path / "d.jsonl", json.dumps(row) + "\n")
    assert stored(store, "patient_id") == ["P050"]


def test_a_code_ending_in_a_tab_in_parquet_is_stored_trimmed(store: Path, tmp_path: Path) -> None:
    path = parquet(
        tmp_path,
        "'P' AS patient_id, 'diagnosis' AS kind, '2020-01-01' AS occurred_at, 'sJIA' || chr(9) AS code",
    )
    run_cli("ingest", path, "--store", store, "--author", "t")
    assert stored(store, "code") == ["sJIA"]


def test_a_number_padded_with_tabs_is_read_as_the_number(store: Path, tmp_path: Path) -> None:
    ingest(
        store, tmp_path / "w.csv", 'patient_id,kind,occurred_at,value,unit\nP,weight,2020-01-01,"\t20\t",kg\n'
    )
    assert stored(store, "value") == [20.0]


def test_a_cell_of_only_a_tab_is_a_missing_value(store: Path, tmp_path: Path) -> None:
    result = ingest(
        store, tmp_path / "w.csv", 'patient_id,kind,occurred_at,value,unit\n"\t",weight,2020-01-01,20,kg\n'
    )
    assert f"{tmp_path / 'w.csv'}: row 1, field patient_id: missing value" in result.stderr


# ---- control and invisible characters (MEDIUM 4) ----------------------------------------------


def test_an_escape_character_in_a_patient_id_is_refused_naming_row_field_and_character(
    store: Path, tmp_path: Path
) -> None:
    result = ingest(store, tmp_path / "e.csv", f"{HEAD}\nP\x1b[31m1,weight,2020-01-01,20,kg,\n")
    assert result.stderr.splitlines()[1] == (
        f"  {tmp_path / 'e.csv'}: row 1, field patient_id: contains an escape character (U+001B) at character 2 "
        "of 'P\\x1b[31m1': remove it"
    )


def test_a_zero_width_space_in_a_drug_is_refused(store: Path, tmp_path: Path) -> None:
    data = "patient_id,kind,occurred_at,drug,dose,dose_unit\nP,medication_start,2020-01-01,ana\u200bkinra,100,mg\n"
    result = ingest(store, tmp_path / "d.csv", data)
    assert (
        "field drug: contains a zero-width space (U+200B) at character 4 of 'ana\\u200bkinra': remove it"
        in (result.stderr)
    )


def test_a_no_break_space_inside_a_patient_id_is_refused_asking_for_a_plain_space(
    store: Path, tmp_path: Path
) -> None:
    result = ingest(store, tmp_path / "n.csv", f"{HEAD}\nP\u00a0052,weight,2020-01-01,20,kg,\n")
    assert (
        "field patient_id: contains a no-break space (U+00A0) at character 2 of 'P\u00a0052': write a plain space"
        in (result.stderr)
    )


def test_a_line_feed_inside_a_quoted_code_is_refused(store: Path, tmp_path: Path) -> None:
    result = ingest(
        store, tmp_path / "c.csv", 'patient_id,kind,occurred_at,code\nP,diagnosis,2020-01-01,"sJ\nIA"\n'
    )
    assert (
        "row 1, field code: contains a line feed (U+000A) at character 3 of 'sJ\\nIA': remove it"
        in result.stderr
    )


def test_an_escaped_control_character_in_json_lines_is_refused(store: Path, tmp_path: Path) -> None:
    row = {"patient_id": "P\x07", "kind": "weight", "occurred_at": "2020-01-01", "value": 20, "unit": "kg"}
    result = ingest(store, tmp_path / "e.jsonl", json.dumps(row) + "\n")
    assert "row 1, field patient_id: contains a control character (U+0007)" in result.stderr


def test_a_control_character_in_parquet_is_refused(store: Path, tmp_path: Path) -> None:
    path = parquet(
        tmp_path,
        "'P' || chr(27) AS patient_id, 'weight' AS kind, '2020-01-01' AS occurred_at, 20.0 AS value, 'kg' AS unit",
    )
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert (result.exit_code, "field patient_id: contains an escape character (U+001B)" in result.stderr) == (
        6,
        True,
    )


def test_a_control_character_in_a_note_is_stored_as_written(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "n.csv", f'{HEAD}\nP,weight,2020-01-01,20,kg,"\x1b[2Jsee\tchart"\n')
    assert stored(store, "note") == ["\x1b[2Jsee\tchart"]


def test_a_control_character_in_a_correction_reason_is_shown_as_an_escape_in_the_history(
    store: Path, tmp_path: Path
) -> None:
    ingest(
        store,
        tmp_path / "w.csv",
        "event_id,patient_id,kind,occurred_at,value,unit\nw1,P,weight,2020-01-01,20,kg\n",
    )
    run_cli(
        "correct", "w1", "--set", "value=21", "--reason", "typo\x1b[2J", "--author", "a", "--store", store
    )
    shown = run_cli("events", "P", "--history", "--store", store).stdout
    assert ("\x1b" in shown, "typo\\x1b[2J" in shown) == (False, True)


def test_visible_shows_control_and_invisible_characters_as_escapes() -> None:
    assert visible("a\x1b[31mb\tc\nd\u200be\x85") == "a\\x1b[31mb\\tc\\nd\\u200be\\x85"


def test_visible_leaves_accents_and_symbols_as_they_are() -> None:
    assert visible("José µg ≤ 10*9/L °C") == "José µg ≤ 10*9/L °C"


def test_an_error_quoting_a_value_with_a_line_break_stays_on_one_line(store: Path, tmp_path: Path) -> None:
    data = (
        'patient_id,kind,occurred_at,drug,dose,dose_unit,route\nP,medication_start,2020-01-01,x,1,mg,"s\nc"\n'
    )
    result = ingest(store, tmp_path / "r.csv", data)
    assert result.stderr.splitlines()[1].endswith(
        "field route: unknown route 's\\nc' (allowed: sc, iv, oral, im, topical, other)"
    )


# ---- look-alike patient ids (MEDIUM 5) and re-exports (MEDIUM 10) ---------------------------------


def test_a_patient_id_with_a_combining_accent_is_refused_as_not_nfc(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "j.csv", f"{HEAD}\nJose\u0301,weight,2020-01-01,20,kg,\n")
    assert "row 1, field patient_id: 'Jose\u0301' is not in Unicode's composed form (NFC)" in result.stderr


def test_a_composed_accent_in_a_patient_id_is_accepted(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "j.csv", f"{HEAD}\nJos\u00e9,weight,2020-01-01,20,kg,\n")
    assert result.exit_code == 0


def test_a_new_patient_id_differing_only_in_case_from_a_stored_one_gets_a_note(
    store: Path, tmp_path: Path
) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\nP050,weight,2020-01-01,20,kg,\n")
    result = ingest(store, tmp_path / "b.csv", f"{HEAD}\np050,weight,2020-01-02,20,kg,\n")
    assert (
        "note: patient ids that differ only in case or Unicode form are different patients: 'p050' (new) and 'P050'"
        in result.stderr
    )


def test_a_new_patient_id_differing_only_in_case_is_still_added(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\nP050,weight,2020-01-01,20,kg,\n")
    ingest(store, tmp_path / "b.csv", f"{HEAD}\np050,weight,2020-01-02,20,kg,\n")
    assert stored(store, "patient_id") == ["P050", "p050"]


ZEROS = "note: patient ids that differ only in the leading zeros of a number (a spreadsheet drops them) are different patients: "


def test_a_new_patient_id_differing_only_in_leading_zeros_from_a_stored_one_gets_a_note(
    store: Path, tmp_path: Path
) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\n007,weight,2020-01-01,20,kg,\n")
    result = ingest(store, tmp_path / "b.csv", f"{HEAD}\n7,weight,2020-01-02,20,kg,\n")
    assert result.exit_code == 0
    assert ZEROS + "'7' (new) and '007'" in result.stderr


def test_ids_differing_only_in_the_zeros_of_their_number_part_get_a_note(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\nV07,weight,2020-01-01,20,kg,\n")
    result = ingest(store, tmp_path / "b.csv", f"{HEAD}\nV007,weight,2020-01-02,20,kg,\n")
    assert ZEROS + "'V007' (new) and 'V07'" in result.stderr


def test_ids_of_one_file_differing_only_in_leading_zeros_get_a_note_in_an_empty_store(
    store: Path, tmp_path: Path
) -> None:
    result = ingest(
        store, tmp_path / "a.csv", f"{HEAD}\n007,weight,2020-01-01,20,kg,\n0007,weight,2020-01-01,20,kg,\n"
    )
    assert ZEROS + "'0007', '007' (new) and each other" in result.stderr


def test_ids_differing_only_in_leading_zeros_are_still_two_patients(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\n007,weight,2020-01-01,20,kg,\n")
    ingest(store, tmp_path / "b.csv", f"{HEAD}\n7,weight,2020-01-02,20,kg,\n")
    assert stored(store, "patient_id") == ["007", "7"]


@settings(max_examples=20, deadline=None)
@given(
    prefix=st.text(alphabet="ABCSV-", max_size=3),
    number=st.integers(1, 99999),
    zeros=st.integers(1, 3),
)
def test_an_id_and_the_same_id_with_its_number_zero_padded_always_get_the_note(
    prefix: str, number: int, zeros: int
) -> None:
    import tempfile

    from timeline.ingest import ingest_file
    from timeline.store import Store

    with tempfile.TemporaryDirectory() as d, Store.create(Path(d) / "s.duckdb") as s:
        path = Path(d) / "a.csv"
        ids = (f"{prefix}{number}", f"{prefix}{'0' * zeros}{number}")
        path.write_text(HEAD + "".join(f"\n{i},weight,2020-01-01,20,kg," for i in ids) + "\n")
        notes = ingest_file(s, path, author="t").notes
    assert any(n.startswith(ZEROS[len("note: ") :]) for n in notes), notes


def test_ids_differing_in_a_zero_that_is_not_leading_get_no_note(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\nV70,weight,2020-01-01,20,kg,\n")
    result = ingest(store, tmp_path / "b.csv", f"{HEAD}\nV7,weight,2020-01-02,20,kg,\n")
    assert "note:" not in result.stderr


def test_a_number_typed_patient_id_column_in_parquet_gets_a_note(store: Path, tmp_path: Path) -> None:
    path = parquet(
        tmp_path,
        "7::INTEGER AS patient_id, 'weight' AS kind, '2020-01-01' AS occurred_at, 20 AS value, 'kg' AS unit",
    )
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 0, result.output
    assert "note: patient_id is a number column (INTEGER) in this file" in result.stderr
    assert stored(store, "patient_id") == ["7"]


def test_a_text_patient_id_column_in_parquet_gets_no_note(store: Path, tmp_path: Path) -> None:
    path = parquet(
        tmp_path,
        "'7' AS patient_id, 'weight' AS kind, '2020-01-01' AS occurred_at, 20 AS value, 'kg' AS unit",
    )
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr


def test_events_of_a_patient_already_stored_get_no_look_alike_note(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{HEAD}\nP050,weight,2020-01-01,20,kg,\n")
    result = ingest(store, tmp_path / "b.csv", f"{HEAD}\nP050,weight,2020-01-02,20,kg,\n")
    assert "note:" not in result.stderr


LAB = "patient_id,kind,occurred_at,code,value,unit"


def test_a_re_export_with_a_changed_value_and_no_event_ids_gets_a_note(store: Path, tmp_path: Path) -> None:
    ingest(
        store,
        tmp_path / "e1.csv",
        f"{LAB}\nR1,lab,2020-01-01,1988-5,12,mg/L\nR1,lab,2020-02-01,1988-5,3,mg/L\n",
    )
    result = ingest(
        store,
        tmp_path / "e2.csv",
        f"{LAB}\nR1,lab,2020-01-01,1988-5,1.2,mg/L\nR1,lab,2020-02-01,1988-5,3,mg/L\n",
    )
    assert (
        "note: 1 event added at the instant of a stored event of the same patient, kind and code"
        in result.stderr
    )


def test_a_lab_of_another_code_at_the_same_instant_gets_no_note(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "e1.csv", f"{LAB}\nR1,lab,2020-01-01,1988-5,12,mg/L\n")
    result = ingest(store, tmp_path / "e2.csv", f"{LAB}\nR1,lab,2020-01-01,4537-7,20,mm/h\n")
    assert "note:" not in result.stderr


def test_a_multi_file_ingest_names_the_files_it_did_not_try(store: Path, tmp_path: Path) -> None:
    bad, later = tmp_path / "bad.csv", tmp_path / "later.csv"
    bad.write_text(f"{HEAD}\nP,weight,2020-01-01,-1,kg,\n")
    later.write_text(f"{HEAD}\nP,weight,2020-01-02,20,kg,\n")
    result = run_cli("ingest", bad, later, "--store", store, "--author", "t")
    assert f"note: not tried, as {bad} was rejected: {later}" in result.stderr


# ---- dose units and unit spellings (MEDIUM 6, MEDIUM 9) -------------------------------------------

MED = "patient_id,kind,occurred_at,drug,dose,dose_unit"


def test_a_dose_in_kilograms_is_refused(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,anakinra,5,kg\n")
    assert (
        "row 1, field dose_unit: dose_unit 'kg' is 1e+06 × mg, not a unit a dose is given in (ng, ug, mg or g)"
        in result.stderr
    )


def test_a_dose_in_mcg_is_refused_naming_ucums_ug(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,anakinra,500,mcg\n")
    assert "row 1, field dose_unit: dose_unit 'mcg' is not UCUM; UCUM writes it 'ug'" in result.stderr


def test_a_dose_in_grams_per_kilogram_as_ivig_is_given_is_accepted(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,ivig,2,g/kg\n")
    assert (result.exit_code, stored(store, "dose")) == (0, [2000.0])


def test_a_dose_over_a_kilogram_is_refused(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,anakinra,1e9,mg\n")
    assert "row 1, field dose: dose 1e9 mg is over 1,000,000 mg (1 kg) per dose" in result.stderr


def test_a_count_in_k_per_microlitre_gets_the_ucum_spelling(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "p.csv", f"{LAB}\nP,lab,2020-01-01,777-3,250,K/uL\n")
    assert "(different dimensions); UCUM writes it '10*3/uL'" in result.stderr


def test_a_micro_sign_in_a_lab_unit_gets_the_ucum_spelling(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "p.csv", f"{LAB}\nP,lab,2020-01-01,751-8,1,x10³/µL\n")
    assert "'x10³/µL' is not a UCUM unit; UCUM writes it '10*3/uL'" in result.stderr


@pytest.mark.parametrize(
    ("date", "says"),
    [("2024-02-30", "has no such day: 2024-02 has 29 days"), ("2023-02-29", "has no such day: 2023-02 has 28 days"),
     ("2024-04-31T10:00", "has no such day: 2024-04 has 30 days")],
)  # fmt: skip
def test_a_date_no_calendar_has_is_named_as_such(store: Path, tmp_path: Path, date: str, says: str) -> None:
    """Helper 50: 2024-02-30 got the message for a date written in another form."""
    result = ingest(store, tmp_path / "d.csv", f"{HEAD}\nD1,weight,{date},20,kg,\n")
    assert result.exit_code == 6
    assert f"row 1, field occurred_at: {says}: '{date}'" in result.stderr


def test_a_dose_unit_that_is_not_ucum_is_named_as_the_file_wrote_it(store: Path, tmp_path: Path) -> None:
    """Was "dose_unit 'mcg'" for MCG: ingest reads a dose unit in lower case, and echoed that."""
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,anakinra,500,MCG\n")
    assert "row 1, field dose_unit: dose_unit 'MCG' is not UCUM; UCUM writes it 'ug'" in result.stderr


def test_a_dose_over_the_limit_in_capitals_shows_the_unit_it_is_read_in(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "d.csv", f"{MED}\nK,medication_start,2020-01-01,ivig,20,G/KG\n")
    assert "row 1, field dose: dose 20 G/KG (20000 mg/kg) is over 10,000 mg/kg (10 g/kg)" in result.stderr


# ---- empty rows and files joined with cat -------------------------------------------------


def test_empty_rows_at_the_end_of_a_csv_file_are_skipped(store: Path, tmp_path: Path) -> None:
    data = f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n,,,,,\n,,,,,\r\n"
    result = ingest(store, tmp_path / "g.csv", data)
    assert (result.exit_code, [e["value"] for e in events_of(store, "G1")]) == (0, [20])


def test_empty_rows_at_the_end_of_a_csv_file_are_named_in_a_note(store: Path, tmp_path: Path) -> None:
    data = f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n,,,,,\n , ,,,,\n"
    result = ingest(store, tmp_path / "g.csv", data)
    assert result.stderr == (
        "note: 2 empty rows at the end of the file (only separators, as a spreadsheet saves rows it once "
        "formatted) skipped: rows 2–3\n"
    )


def test_the_note_on_empty_rows_at_the_end_is_in_the_json_document(store: Path, tmp_path: Path) -> None:
    data = f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n,,,,,\n"
    result = ingest(store, tmp_path / "g.csv", data, "--json")
    assert json.loads(result.stdout)["notes"] == [
        "1 empty row at the end of the file (only separators, as a spreadsheet saves rows it once formatted) "
        "skipped: row 2"
    ]


def test_a_file_with_no_row_but_empty_ones_adds_nothing(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "g.csv", f"{HEAD}\n,,,,,\n,,,,,\n")
    assert (result.exit_code, result.stdout) == (
        0,
        f"{tmp_path / 'g.csv'}: 0 events added, 0 duplicates skipped (high-water seq 0)\n",
    )


def test_an_empty_row_between_rows_refuses_the_file_and_leaves_the_store_unchanged(
    store: Path, tmp_path: Path
) -> None:
    before = snapshot(store)
    result = ingest(
        store,
        tmp_path / "g.csv",
        f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n,,,,,\nG1,weight,2020-01-02,21,kg,\n",
    )
    assert (result.exit_code, snapshot(store)) == (6, before)


def test_an_empty_row_after_a_blank_line_is_named_at_its_line(store: Path, tmp_path: Path) -> None:
    data = f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n\n,,,,,\nG1,weight,2020-01-02,21,kg,\n"
    result = ingest(store, tmp_path / "g.csv", data)
    assert f"{tmp_path / 'g.csv'}: row 2 (line 4): empty, only separators" in result.stderr


def test_blank_lines_at_the_end_of_a_csv_file_are_skipped_without_a_note(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "g.csv", f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n\n\n")
    assert (result.exit_code, result.stderr) == (0, "")


def test_blank_lines_of_spaces_in_json_lines_are_skipped(store: Path, tmp_path: Path) -> None:
    row = json.dumps(
        {"patient_id": "J1", "kind": "weight", "occurred_at": "2020-01-01", "value": 20, "unit": "kg"}
    )
    result = ingest(store, tmp_path / "g.jsonl", f"{row}\n  \n\t\n\n")
    assert (result.exit_code, len(events_of(store, "J1"))) == (0, 1)


def test_a_repeated_header_is_named_and_its_fields_are_not(store: Path, tmp_path: Path) -> None:
    """Was one error a field: "unknown kind 'kind'", "not a valid date ... 'occurred_at'",
    "not a number: 'value'"."""
    result = ingest(
        store,
        tmp_path / "j.csv",
        f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n{HEAD}\nG1,weight,2020-01-02,21,kg,\n",
    )
    assert result.stderr.splitlines()[1:] == [
        f"  {tmp_path / 'j.csv'}: row 2: the header again (two files joined?): delete the line, or ingest the "
        "files one by one"
    ]


def test_a_repeated_header_as_the_last_line_is_refused(store: Path, tmp_path: Path) -> None:
    result = ingest(store, tmp_path / "j.csv", f"{HEAD}\nG1,weight,2020-01-01,20,kg,\n{HEAD}\n")
    assert (result.exit_code, "row 2: the header again" in result.stderr) == (6, True)


def test_a_row_naming_one_column_in_a_value_is_not_taken_for_a_header(store: Path, tmp_path: Path) -> None:
    # a note that reads "kind" is a note: the row is an event
    result = ingest(store, tmp_path / "j.csv", f"{HEAD}\nG1,weight,2020-01-01,20,kg,kind\n")
    assert (result.exit_code, [e["note"] for e in events_of(store, "G1")]) == (0, ["kind"])


# ---- hints on numbers and dates a spreadsheet or a lab system writes (h63 finding 6) ---------------


def value_error(store: Path, tmp_path: Path, value: str, when: str = "2020-01-01") -> str:
    result = ingest(store, tmp_path / "v.csv", f"{LAB}\nR1,lab,{when},1988-5,{value},mg/L\n")
    assert result.exit_code == 6
    return result.stderr


def test_a_comma_before_three_digits_gives_both_readings(store: Path, tmp_path: Path) -> None:
    assert (
        "not a number: '1,234' (1,234: a decimal comma (1.234) or a thousands separator (1234)? "
        "write it with a point as the decimal mark and no separators)"
    ) in value_error(store, tmp_path, '"1,234"')


def test_a_comma_before_other_than_three_digits_is_read_as_a_decimal_comma(
    store: Path, tmp_path: Path
) -> None:
    assert "not a number: '2,5' (a decimal comma? write 2.5: a point as the decimal mark)" in value_error(
        store, tmp_path, '"2,5"'
    )


def test_thousands_separators_with_a_decimal_point_are_named(store: Path, tmp_path: Path) -> None:
    assert "not a number: '1,234.5' (thousands separators? write 1234.5: no separators)" in value_error(
        store, tmp_path, '"1,234.5"'
    )


@pytest.mark.parametrize("value", ["<5 mg/L", "> 100 (high)", "<=0,5"])
def test_text_that_begins_like_a_censored_value_says_how_one_is_written(
    store: Path, tmp_path: Path, value: str
) -> None:
    """A lab's <5 is stored as a censored value (tests/test_censored_values.py); text that is
    almost one is refused with how to write it."""
    assert "a censored value" in value_error(store, tmp_path, f'"{value}"')


def test_a_spreadsheet_day_number_as_a_date_is_read_for_the_user(store: Path, tmp_path: Path) -> None:
    assert (
        "'39514' (a spreadsheet's day number? 39514 counted from 1899-12-30 is 2008-03-07: "
        "save the column as dates, YYYY-MM-DD)"
    ) in value_error(store, tmp_path, "2", when="39514")


def test_a_date_with_day_and_month_both_twelve_or_less_gives_both_readings(
    store: Path, tmp_path: Path
) -> None:
    assert (
        "'12/03/2007' (day/month or month/day? it reads 2007-03-12 or 2007-12-03: write it as YYYY-MM-DD)"
        in (value_error(store, tmp_path, "2", when="12/03/2007"))
    )


def test_a_day_first_date_that_is_not_ambiguous_asks_for_year_month_day(store: Path, tmp_path: Path) -> None:
    assert "'31/03/2007' (write it as YYYY-MM-DD: year, month, day)" in value_error(
        store, tmp_path, "2", when="31/03/2007"
    )


# ---- what differs: conflicts and events beside stored ones (h63 findings 5 and 9) ------------------

IDS = "event_id,patient_id,kind,occurred_at,code,value,unit"


def test_a_conflict_names_the_field_that_differs_with_both_values(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,4.1,mg/L\n")
    result = ingest(store, tmp_path / "b.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,5,mg/L\n")
    assert result.exit_code == 6
    assert (
        "with different content: value: stored 4.1 mg/L, file 5 mg/L; use `timeline correct`" in result.stderr
    )


def test_a_conflict_in_another_unit_of_the_same_quantity_says_so(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{IDS},note\nM1,R1,lab,2020-01-01,1988-5,4.1,mg/L,\n")
    result = ingest(store, tmp_path / "b.csv", f"{IDS},note\nM1,R1,lab,2020-01-01,1988-5,0.41,mg/dL,again\n")
    assert result.exit_code == 6
    assert (
        "value: stored 4.1 mg/L, file 0.41 mg/dL (the same quantity, 4.1 mg/L, written in another unit)"
        in result.stderr
    )


def test_the_same_quantity_in_another_unit_is_skipped_as_a_duplicate_with_a_note(
    store: Path, tmp_path: Path
) -> None:
    ingest(store, tmp_path / "a.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,4.1,mg/L\n")
    result = ingest(store, tmp_path / "b.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,0.41,mg/dL\n")
    assert (result.exit_code, "row 1: M1, 0.41 mg/dL = 4.1 mg/L as stored (seq 1)" in result.stderr) == (
        0,
        True,
    )


def test_a_conflict_names_a_date_against_a_time_at_its_midnight(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,4.1,mg/L\n")
    result = ingest(store, tmp_path / "b.csv", f"{IDS}\nM1,R1,lab,2020-01-01T00:00,1988-5,4.1,mg/L\n")
    assert (
        "with different content: occurred_at: stored 2020-01-01 (a date), file 2020-01-01T00:00:00 (a time);"
        in result.stderr
    )


def test_a_conflict_with_a_corrected_event_cites_its_current_version(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "a.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,4.1,mg/L\n")
    run_cli("correct", "M1", "--set", "value=4.2", "--reason", "lab", "--author", "t", "--store", store)
    result = ingest(store, tmp_path / "b.csv", f"{IDS}\nM1,R1,lab,2020-01-01,1988-5,5,mg/L\n")
    assert (
        "is already in the store (seq 1, corrected at seq 2) with different content: value: stored 4.2 mg/L, file 5 mg/L"
        in result.stderr
    )


def test_a_midnight_time_beside_a_stored_date_with_the_same_values_says_only_the_time_differs(
    store: Path, tmp_path: Path
) -> None:
    ingest(store, tmp_path / "a.csv", f"{LAB}\nR1,lab,2020-01-01,1988-5,4.1,mg/L\n")
    path = parquet(
        tmp_path,
        "'R1' AS patient_id, 'lab' AS kind, TIMESTAMP '2020-01-01 00:00' AS occurred_at, "
        "'1988-5' AS code, 4.1 AS value, 'mg/L' AS unit",
    )
    result = run_cli("ingest", path, "--store", store, "--author", "t")
    assert result.exit_code == 0, result.output
    assert "with the same values: only how its time is given differs" in result.stderr
    assert "occurred_at: stored 2020-01-01 (a date), file 2020-01-01T00:00:00 (a time))" in result.stderr
    assert "changed values?" not in result.stderr


def test_a_re_export_note_names_the_value_that_changed(store: Path, tmp_path: Path) -> None:
    ingest(store, tmp_path / "e1.csv", f"{LAB}\nR1,lab,2020-01-01,1988-5,12,mg/L\n")
    result = ingest(store, tmp_path / "e2.csv", f"{LAB}\nR1,lab,2020-01-01,1988-5,1.2,mg/L\n")
    assert "value: stored 12 mg/L, file 1.2 mg/L): a re-export with changed values?" in result.stderr
