from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.units import UnitError, by_molar_mass, combine, conversion, odd_factor, parse, ucum_hint


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


# ---- exact ratios: a time in another unit (183 d is the 183 / 30.4375 months time_since counts) ----

DAYS_OF = {"d": 1, "wk": 7, "mo": 30.4375, "a": 365.25}  # UCUM's week, mean Julian month and year


def test_units_of_time_convert_by_their_exact_ratios() -> None:
    assert conversion("d", "mo").ratio == (16, 487)  # a month is 487/16 days
    assert conversion("mo", "a").ratio == (1, 12)
    assert conversion("wk", "d").ratio == (7, 1)
    assert conversion("a", "d").ratio == (1461, 4)


def test_a_decimal_prefix_converts_by_an_exact_ratio() -> None:
    assert conversion("mg/dL", "mg/L").ratio == (10, 1)
    assert conversion("10*3/uL", "10*9/L").ratio == (1, 1)


def test_an_offset_unit_has_no_ratio() -> None:
    assert conversion("[degF]", "Cel").ratio is None


@given(st.integers(min_value=-73200, max_value=73200), st.sampled_from(["mo", "a", "wk"]))
def test_a_count_of_days_converts_to_the_number_a_count_in_that_unit_is(days: int, unit: str) -> None:
    """Whole days in months, years or weeks are the very double the count divides out (days /
    30.4375), and back in days round to the whole days at 9 decimals, as comparisons round."""
    per = DAYS_OF[unit]
    assert conversion("d", unit).apply(days) == days / per
    assert round(conversion(unit, "d").apply(days / per), 9) == days


@given(
    st.integers(min_value=0, max_value=2000), st.sampled_from(list(DAYS_OF)), st.sampled_from(list(DAYS_OF))
)
def test_a_whole_number_of_one_unit_of_time_is_the_same_days_in_another(n: int, a: str, b: str) -> None:
    """n a-units in b-units, then in days, are n × the a-unit's days (to the 9 decimals a
    comparison reads): no drift from a rounded factor on the way."""
    there = conversion(a, b).apply(n)
    assert round(conversion(b, "d").apply(there), 9) == round(n * DAYS_OF[a], 9)


def test_a_mass_concentration_converts_to_an_amount_of_substance_by_molar_mass() -> None:
    assert round(conversion("mg/dL", "mmol/L", 885.7).apply(156), 4) == 1.7613


@given(st.floats(min_value=0, max_value=1e5, allow_nan=False), st.sampled_from(["mg/dL", "g/L", "ug/mL"]))
def test_a_conversion_by_molar_mass_round_trips(value: float, mass_unit: str) -> None:
    there = conversion(mass_unit, "mmol/L", 885.7).apply(value)
    assert conversion("mmol/L", mass_unit, 885.7).apply(there) == pytest.approx(value, rel=1e-12, abs=1e-12)


def test_only_a_mass_and_an_amount_of_it_convert_by_molar_mass() -> None:
    assert by_molar_mass("mg/dL", "mmol/L") and by_molar_mass("umol/L", "g/L")
    assert not by_molar_mass("mg/dL", "mg/L")  # they convert without one
    assert not by_molar_mass("mg", "mmol/L")  # nor with one
