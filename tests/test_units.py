from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.units import UnitError, combine, conversion, odd_factor, parse, ucum_hint


def test_crp_mg_per_dl_converts_to_mg_per_l_by_ten() -> None:
    assert conversion("mg/dL", "mg/L").apply(0.5) == 5.0


def test_platelets_per_microlitre_equal_per_nanolitre_exactly() -> None:
    assert conversion("10*3/uL", "10*9/L").scale == 1.0


def test_triglycerides_mmol_per_l_convert_with_molar_mass() -> None:
    assert round(conversion("mmol/L", "mg/dL", 885.7).apply(1.76)) == 156


def test_fahrenheit_converts_affinely_to_celsius() -> None:
    assert round(conversion("[degF]", "Cel").apply(100.4), 9) == 38.0


def test_incompatible_dimensions_refuse_to_convert() -> None:
    with pytest.raises(UnitError, match="different dimensions"):
        conversion("mg/L", "U/L")


def test_unknown_symbol_is_reported_by_name() -> None:
    with pytest.raises(UnitError, match="'foo'"):
        conversion("foo/L", "mg/L")


def test_a_bare_number_that_is_not_a_power_of_ten_is_an_odd_factor() -> None:
    assert odd_factor("10.9/L") == 9


def test_an_exponent_is_not_an_odd_factor() -> None:
    assert odd_factor("/mm3") is None


@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["mg/L", "mg/dL", "g/L", "ug/mL"])
)
def test_conversion_round_trips(value: float, unit: str) -> None:
    there = conversion(unit, "mg/L").apply(value)
    back = conversion("mg/L", unit).apply(there)
    assert back == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_a_product_cancels_a_unit_it_is_multiplied_back_by() -> None:
    assert combine(["mg/kg/d", "d"], "mul") == "mg/kg"


def test_a_quotient_of_two_units_reads_as_one() -> None:
    assert combine(["mg", "kg"], "div") == "mg/kg"


def test_a_quotient_of_a_unit_by_itself_is_a_pure_number() -> None:
    assert combine(["mg/kg/d", "mg/kg/d"], "div") == "1"


def test_a_unit_squared_takes_an_exponent() -> None:
    assert combine(["m", "m"], "mul") == "m2"


def test_units_written_differently_do_not_cancel() -> None:
    assert combine(["mg/kg/d", "h"], "mul") == "mg.h/kg/d"


def test_an_offset_unit_keeps_the_bracketed_form() -> None:
    assert combine(["Cel", "d"], "mul") == "(Cel).(d)"


def test_a_factor_is_repeated_not_given_an_exponent() -> None:
    assert combine(["10*9/L", "10*9/L"], "mul") == "10*9.10*9/L2"


UNITS = [
    "mg",
    "kg",
    "d",
    "h",
    "mg/kg/d",
    "10*9/L",
    "mg/dL",
    "m2",
    "/d",
    "{joints}",
    "%",
    "1",
    "mg{total}",
    "U/L",
]


@given(st.lists(st.sampled_from(UNITS), min_size=2, max_size=4), st.sampled_from(["mul", "div"]))
def test_a_combined_unit_converts_exactly_as_the_bracketed_product(units: list[str], op: str) -> None:
    """Cancelling changes how the unit reads, never what it is: the same dimension, and a
    factor of 1 between the two."""
    bracketed = ("." if op == "mul" else "/").join(f"({u})" for u in units)
    simple = combine(units, op)
    assert parse(simple).dim == parse(bracketed).dim
    assert conversion(simple, bracketed).scale == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    ("unit", "target", "hint"),
    [("lb", "kg", "'[lb_av]'"), ("degF", "Cel", "'[degF]'"), ("°C", "Cel", "'Cel'"), ("mcg/kg", "mg/kg", "'ug/kg'"),
     ("mm/hr", "mm/h", "'mm/h'"), ("IU/L", "[IU]/L", "'[IU]/L'"), ("µmol/L", "mmol/L", "'umol/L'"),
     ("μmol/L", "mmol/L", "'umol/L'"), ("/µL", "10*9/L", "'/uL'"), ("x10³/µL", "10*9/L", "'10*3/uL'"),
     ("C", "Cel", "'Cel'"), ("cel", "Cel", "'Cel'"), ("℃", "Cel", "'Cel'"), ("deg C", "Cel", "'Cel'"),
     ("G/L", "10*9/L", "'10*9/L'"), ("cells/uL", "10*9/L", "'/uL'"), ("K/uL", "10*9/L", "'10*3/uL'"),
     ("MG/DL", "mg/dL", "'mg/dL'"), ("mg / dL", "mg/dL", "'mg/dL'"), ("Kg", "kg", "'kg'")],
)  # fmt: skip
def test_a_unit_written_another_way_is_refused_naming_its_ucum_spelling(
    unit: str, target: str, hint: str
) -> None:
    with pytest.raises(UnitError) as caught:
        conversion(unit, target)
    assert str(caught.value).endswith(f"; UCUM writes it {hint}")


def test_every_ucum_spelling_a_hint_gives_is_a_unit_this_reads() -> None:
    from timeline.units import _SPELLINGS

    for spelling in set(_SPELLINGS.values()):
        conversion(spelling, spelling if spelling != "[degF]" else "Cel")
        if spelling not in ("Cel", "[degF]"):
            parse(spelling)


@pytest.mark.parametrize("unit", ["mg/dL", "10*3/uL", "K", "Cel", "umol/L"])
def test_a_ucum_unit_gets_no_hint(unit: str) -> None:
    assert ucum_hint(unit) == ""
