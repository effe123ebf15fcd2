"""Rows without an ``event_id`` that give one measurement (the same patient, code and time) in
two units with the same quantity (CRP 5 mg/L and 0.5 mg/dL) derive two event ids, and are stored
as two events, as before; a note names the rows and units, and says to give them one event_id
if they are one result (under one event_id they are one event: test_ingest_units_in_one_file)
(helper 86)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import run_cli
from timeline.ingest import IngestResult, ingest_file
from timeline.store import Store

HEAD = "patient_id,kind,occurred_at,code,value,unit\n"
CRP = "lab,2009-03-01,1988-5"


def ingest(tmp_path: Path, *rows: str, head: str = HEAD) -> IngestResult:
    path = tmp_path / "labs.csv"
    path.write_text(head + "".join(r + "\n" for r in rows), encoding="utf-8")
    store = Store.create(tmp_path / "s.duckdb")
    try:
        return ingest_file(store, path, author="t")
    finally:
        store.close()


def split(notes: list[str]) -> list[str]:
    return [n for n in notes if "at the same time in" in n]


def test_one_crp_in_mg_per_l_and_mg_per_dl_without_event_ids_is_named_in_a_note(tmp_path: Path) -> None:
    result = ingest(tmp_path, f"P1,{CRP},5,mg/L", "P1,lab,2009-03-02,1988-5,7,mg/L", f"P1,{CRP},0.5,mg/dL")
    assert split(result.notes) == [
        "rows 1 and 3 give the same CRP at the same time in mg/L and mg/dL (5 mg/L = 0.5 mg/dL); stored as "
        "two events: give them one event_id if they are one result"
    ]


def test_one_crp_in_two_units_without_event_ids_is_still_stored_as_two_events(tmp_path: Path) -> None:
    result = ingest(tmp_path, f"P1,{CRP},5,mg/L", f"P1,{CRP},0.5,mg/dL")
    assert (result.added, result.duplicates) == (2, 0)


def test_two_values_that_differ_in_two_units_are_not_noted(tmp_path: Path) -> None:
    assert split(ingest(tmp_path, f"P1,{CRP},5,mg/L", f"P1,{CRP},0.6,mg/dL").notes) == []


def test_the_same_value_at_another_time_is_not_noted(tmp_path: Path) -> None:
    notes = ingest(tmp_path, f"P1,{CRP},5,mg/L", "P1,lab,2009-03-01T08:00,1988-5,0.5,mg/dL").notes
    assert split(notes) == []


def test_the_same_value_of_another_patient_is_not_noted(tmp_path: Path) -> None:
    assert split(ingest(tmp_path, f"P1,{CRP},5,mg/L", f"P2,{CRP},0.5,mg/dL").notes) == []


def test_rows_with_their_own_event_ids_are_not_noted(tmp_path: Path) -> None:
    notes = ingest(tmp_path, f"c1,P1,{CRP},5,mg/L", f"c2,P1,{CRP},0.5,mg/dL", head="event_id," + HEAD).notes
    assert split(notes) == []


def test_a_censored_value_beside_an_exact_one_in_another_unit_is_not_noted(tmp_path: Path) -> None:
    assert split(ingest(tmp_path, f"P1,{CRP},<5,mg/L", f"P1,{CRP},0.5,mg/dL").notes) == []


def test_several_pairs_are_counted_and_listed_in_one_note(tmp_path: Path) -> None:
    notes = split(
        ingest(
            tmp_path,
            f"P1,{CRP},5,mg/L",
            "P1,weight,2009-03-01,,20,kg",
            f"P1,{CRP},0.5,mg/dL",
            "P1,weight,2009-03-01,,20000,g",
        ).notes
    )
    assert notes == [
        "2 pairs of rows give the same measurement at the same time in two units (rows 1 and 3: CRP "
        "5 mg/L = 0.5 mg/dL; rows 2 and 4: body weight 20 kg = 20000 g); each stored as two events: give a "
        "pair one event_id if it is one result"
    ]


def test_the_note_is_in_the_json_document_of_ingest(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    assert run_cli("init", "--store", store).exit_code == 0
    path = tmp_path / "labs.csv"
    path.write_text(HEAD + f"P1,{CRP},5,mg/L\nP1,{CRP},0.5,mg/dL\n", encoding="utf-8")
    result = run_cli("ingest", path, "--store", store, "--author", "t", "--json")
    assert result.exit_code == 0, result.output
    assert split(json.loads(result.stdout)["notes"])


@settings(max_examples=15, deadline=None)
@given(cents=st.integers(min_value=1, max_value=50_000), off=st.booleans())
def test_a_value_in_mg_per_l_is_noted_beside_its_exact_mg_per_dl_only(
    tmp_path_factory: pytest.TempPathFactory, cents: int, off: bool
) -> None:
    mg_l = Decimal(cents) / 100
    mg_dl = mg_l / 10 + (Decimal("0.001") if off else 0)
    notes = split(
        ingest(tmp_path_factory.mktemp("q"), f"P1,{CRP},{mg_l},mg/L", f"P1,{CRP},{mg_dl},mg/dL").notes
    )
    assert len(notes) == (0 if off else 1)
