"""An event given again with the same quantities in another unit (CRP 10 mg/L, then 1 mg/dL,
under one event id) is a duplicate, skipped with a note, not a conflict; any real difference
stays a conflict. Nothing about the stored event changes (helper 72)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timeline.errors import IngestError
from timeline.ingest import append_rows, retract
from timeline.integrity import verify
from timeline.store import Store

CRP = {"event_id": "c1", "patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01", "code": "1988-5"}


def add(store: Store, **fields: Any) -> Any:
    return append_rows(store, [{**CRP, **fields}], author="t")


def conflict(store: Store, **fields: Any) -> str:
    with pytest.raises(IngestError) as caught:
        add(store, **fields)
    return str(caught.value.errors[0])


def test_a_value_given_again_in_another_unit_is_a_duplicate(store: Store) -> None:
    add(store, value="10", unit="mg/L")
    result = add(store, value="1", unit="mg/dL")
    assert (result.added, result.duplicates) == (0, 1)


def test_a_value_given_again_in_another_unit_writes_nothing(store: Store) -> None:
    add(store, value="10", unit="mg/L")
    add(store, value="1", unit="mg/dL")
    assert store.high_water() == 1


def test_the_note_says_the_row_gives_the_same_quantity_in_another_unit(store: Store) -> None:
    add(store, value="10", unit="mg/L")
    (note,) = add(store, value="1", unit="mg/dL").notes
    assert "row 1: c1, 1 mg/dL = 10 mg/L as stored (seq 1)" in note


def test_the_hash_chain_verifies_after_a_duplicate_in_another_unit(store: Store) -> None:
    add(store, value="10", unit="mg/L")
    add(store, value="1", unit="mg/dL")
    add(store, event_id="c2", value="3", unit="mg/L")
    assert verify(store).ok


def test_a_value_in_another_unit_that_differs_in_its_last_decimal_is_a_conflict(store: Store) -> None:
    add(store, value="4.1", unit="mg/L")
    assert "value: stored 4.1 mg/L, file 0.411 mg/dL (that is 4.11 mg/L, not the same quantity)" in conflict(
        store, value="0.411", unit="mg/dL"
    )


def test_a_reference_range_given_in_the_other_unit_too_is_a_duplicate(store: Store) -> None:
    add(store, value="84", unit="mg/L", ref_low="0", ref_high="5")
    assert add(store, value="8.4", unit="mg/dL", ref_low="0", ref_high="0.5").duplicates == 1


def test_a_reference_range_left_in_the_first_unit_is_a_conflict(store: Store) -> None:
    add(store, value="84", unit="mg/L", ref_low="0", ref_high="5")
    assert "ref_high: stored 5 mg/L, file 50 mg/dL (that is 500 mg/L, not the same quantity)" in conflict(
        store, value="8.4", unit="mg/dL", ref_low="0", ref_high="50"
    )


def test_a_temperature_in_fahrenheit_equal_to_the_stored_celsius_is_a_duplicate(store: Store) -> None:
    temp = {"event_id": "t1", "kind": "body_temperature", "code": None}
    add(store, **temp, value="39.2", unit="Cel")
    assert add(store, **temp, value="102.56", unit="[degF]").duplicates == 1


def test_a_dose_in_grams_equal_to_the_stored_milligrams_is_a_duplicate(store: Store) -> None:
    dose = {"event_id": "d1", "kind": "medication_start", "code": None, "drug": "anakinra", "route": "sc"}
    add(store, **dose, dose="100", dose_unit="mg")
    assert add(store, **dose, dose="0.1", dose_unit="g").duplicates == 1


def test_another_field_changed_beside_a_value_in_another_unit_stays_a_conflict(store: Store) -> None:
    add(store, value="4.1", unit="mg/L")
    message = conflict(store, value="0.41", unit="mg/dL", note="repeat")
    assert (
        "(the same quantity, 4.1 mg/L, written in another unit); note: stored empty, file repeat" in message
    )


def test_a_retracted_event_given_again_in_another_unit_stays_retracted(store: Store) -> None:
    add(store, value="10", unit="mg/L")
    retract(store, "c1", reason="wrong patient", author="t")
    result = add(store, value="1", unit="mg/dL")
    assert (result.added, result.retracted) == (0, 1)


def test_the_first_version_of_a_corrected_event_in_another_unit_is_a_duplicate(store: Store) -> None:
    from timeline.ingest import correct

    add(store, value="10", unit="mg/L")
    correct(store, "c1", {"value": "12"}, reason="typo", author="t")
    assert add(store, value="1", unit="mg/dL").duplicates == 1


@settings(max_examples=15, deadline=None)
@given(cents=st.integers(min_value=1, max_value=50_000))
def test_any_value_in_mg_per_l_given_again_as_its_exact_mg_per_dl_is_a_duplicate(
    tmp_path_factory: pytest.TempPathFactory, cents: int
) -> None:
    store = Store.create(tmp_path_factory.mktemp("q") / "s.duckdb")
    try:
        mg_l = Decimal(cents) / 100
        add(store, value=str(mg_l), unit="mg/L")
        assert add(store, value=str(mg_l / 10), unit="mg/dL").duplicates == 1
    finally:
        store.close()


@settings(max_examples=15, deadline=None)
@given(cents=st.integers(min_value=1, max_value=50_000))
def test_any_value_in_mg_per_dl_off_by_a_thousandth_of_a_unit_is_a_conflict(
    tmp_path_factory: pytest.TempPathFactory, cents: int
) -> None:
    store = Store.create(tmp_path_factory.mktemp("q") / "s.duckdb")
    try:
        mg_l = Decimal(cents) / 100
        add(store, value=str(mg_l), unit="mg/L")
        with pytest.raises(IngestError):
            add(store, value=str(mg_l / 10 + Decimal("0.001")), unit="mg/dL")
    finally:
        store.close()


# ---- what a conflict says of a quantity in another unit (helper 81) -------------------


def test_a_value_that_differs_past_the_ninth_decimal_is_not_called_the_same_quantity(store: Store) -> None:
    add(store, value="4.1", unit="mg/L")
    message = conflict(store, value="0.4100000000001", unit="mg/dL")
    assert "the same quantity," not in message


def test_a_value_that_differs_past_the_ninth_decimal_is_shown_exactly_in_the_stored_unit(
    store: Store,
) -> None:
    add(store, value="4.1", unit="mg/L")
    message = conflict(store, value="0.4100000000001", unit="mg/dL")
    assert "file 0.4100000000001 mg/dL (that is 4.100000000001 mg/L, not the same quantity)" in message


def test_a_reference_limit_in_a_conflict_is_named_with_its_unit(store: Store) -> None:
    add(store, value="8.4", unit="mg/dL", ref_low="0", ref_high="0.5")
    assert "ref_high: stored 0.5 mg/dL, file 0.6 mg/dL" in conflict(
        store, value="8.4", unit="mg/dL", ref_low="0", ref_high="0.6"
    )


def test_a_reference_limit_with_the_same_number_in_another_unit_is_a_difference(store: Store) -> None:
    add(store, value="84", unit="mg/L", ref_low="0", ref_high="5")
    assert "ref_high: stored 5 mg/L, file 5 mg/dL (that is 50 mg/L, not the same quantity)" in conflict(
        store, value="8.4", unit="mg/dL", ref_low="0", ref_high="5"
    )


def test_a_reference_limit_that_is_the_same_quantity_in_another_unit_is_not_named(store: Store) -> None:
    add(store, value="84", unit="mg/L", ref_low="0", ref_high="5")
    message = conflict(store, value="8.4", unit="mg/dL", ref_low="0", ref_high="0.5", note="again")
    assert "ref_high" not in message


@settings(max_examples=200, deadline=None)
@given(
    stored=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100_000), places=3),
    given_=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10_000), places=13),
)
def test_a_quantity_hint_calls_two_quantities_the_same_exactly_when_they_are(
    stored: Decimal, given_: Decimal
) -> None:
    from timeline.ingest import _quantity_hint, _same_quantities

    value, stored_value = float(given_), float(stored)
    hint = _quantity_hint(value, "mg/dL", stored_value, "mg/L", stored_value, "mg/L", None)
    same = _same_quantities([value], "mg/dL", [stored_value], "mg/L", None)
    assert ("the same quantity," in hint) == same
    if not same:  # the file's quantity, shown in the stored unit, never reads as the stored one
        shown = Decimal(hint.removeprefix(" (that is ").split(" ")[0])
        assert shown != Decimal(repr(stored_value))
