"""How the engine compares a censored value (``<5``, ``>2000``): decided only when the whole range
it stands for lies on one side of the threshold, unknown otherwise with a reason naming it;
arithmetic and aggregates over one are unknown. The replay and the SQL engine give the same
answers (both are checked on every case), and the SQL form of the decision is the Python one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine_support import store_with, write_rule
from timeline.engine import censored
from timeline.engine.evaluate import Result, Session
from timeline.language.loader import load_rules

CRP = {"kind": "lab", "code": "1988-5"}
LATEST = {"latest": {"select": CRP, "within": "30 days"}}


def _crp(value: str, day: str = "2009-03-01", **extra: Any) -> dict[str, Any]:
    return {"patient_id": "P1", "kind": "lab", "code": "1988-5", "occurred_at": day, "value": value,
            "unit": "mg/L", **extra}  # fmt: skip


def _both(tmp_path: Path, rows: list[dict[str, Any]], define: Any, at: str = "2009-03-02") -> Result:
    """The rule's state by the replay and by the SQL engine, which must agree."""
    write_rule(tmp_path / "rules", "r", define)
    rules = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "s.duckdb", rows) as store:
        replayed = Session(store, rules).state("P1", at, ["r"])[0]
        sql = Session(store, rules)
        sql.replay = False
        compiled = sql.state("P1", at, ["r"])[0]
    assert (replayed.value, replayed.why, replayed.note, replayed.evidence, replayed.qualifier) == (
        compiled.value, compiled.why, compiled.note, compiled.evidence, compiled.qualifier,
    )  # fmt: skip
    return replayed


# (value, op, threshold in mg/L, expected): at, above and below the bound
TRUTH = [
    ("<5", "le", 10, True),
    ("<5", "lt", 10, True),
    ("<5", "gt", 10, False),
    ("<5", "ge", 10, False),
    ("<5", "le", 3, None),
    ("<5", "gt", 3, None),
    ("<5", "lt", 5, True),
    ("<5", "le", 5, True),
    ("<5", "ge", 5, False),
    ("<5", "gt", 5, False),
    ("<5", "eq", 5, False),
    ("<5", "ne", 5, True),
    ("<5", "eq", 3, None),
    ("<10", "le", 10, True),
    ("<10", "lt", 10, True),
    ("<=10", "le", 10, True),
    ("<=10", "lt", 10, None),
    ("<=10", "gt", 10, False),
    ("<=10", "ge", 10, None),
    (">200", "gt", 200, True),
    (">200", "ge", 200, True),
    (">200", "gt", 68.4, True),
    (">200", "le", 68.4, False),
    (">200", "gt", 250, None),
    (">200", "le", 200, False),
    (">=200", "gt", 200, None),
    (">=200", "ge", 200, True),
    (">=200", "lt", 200, False),
    (">=200", "lt", 199, False),
]


@pytest.mark.parametrize(("value", "op", "threshold", "expected"), TRUTH)
def test_a_comparison_with_a_censored_value_is_decided_only_by_its_whole_range(
    tmp_path: Path, value: str, op: str, threshold: float, expected: bool | None
) -> None:
    got = _both(tmp_path, [_crp(value)], {op: [LATEST, f"{threshold} mg/L"]})
    assert got.value is expected


def test_an_undecided_comparison_names_the_censored_value(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"le": [LATEST, "3 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )
    assert got.note == "<5 vs 3 mg/L"


def test_a_decided_comparison_notes_the_censored_value(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"le": [LATEST, "10 mg/L"]})
    assert (got.why, got.note) == (None, "<5 ≤ 10 mg/L")


def test_a_censored_value_in_another_unit_is_compared_in_the_rule_unit(tmp_path: Path) -> None:
    row = {**_crp("<0.5"), "unit": "mg/dL"}
    assert _both(tmp_path, [row], {"le": [LATEST, "0.5 mg/dL"]}).value is True


def test_a_stale_censored_value_is_too_old_as_any_other(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"le": [LATEST, "10 mg/L"]}, at="2009-05-01")
    assert got.value is None and "is too old" in (got.why or "")


FERRITIN = {"latest": {"select": {"kind": "lab", "code": "2276-4"}, "within": "30 days"}}


def _ferritin(value: str) -> dict[str, Any]:
    return {**_crp(value), "code": "2276-4", "unit": "ng/mL"}


@pytest.mark.parametrize(("op", "expected"), [("gt", True), ("le", False), ("eq", False)])
def test_two_censored_values_compare_by_their_ranges(tmp_path: Path, op: str, expected: bool) -> None:
    """A ferritin above 2000 ng/mL against a CRP below 1 mg/L (1000 ng/mL): every number of the
    one is above every number of the other."""
    got = _both(tmp_path, [_crp("<1"), _ferritin(">2000")], {op: [FERRITIN, LATEST]})
    assert got.value is expected


def test_two_overlapping_censored_values_are_undecided(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5"), _ferritin(">2000")], {"gt": [FERRITIN, LATEST]})
    assert got.value is None
    assert got.why == (
        "ferritin >2000 ng/mL on 2009-03-01 is censored: its exact value is not known; "
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known"
    )


def test_a_censored_value_against_an_exact_one_of_another_rule_node(tmp_path: Path) -> None:
    rows = [_crp("<5"), _crp("9", "2009-02-20")]
    previous = {"max": {"select": CRP, "window": {"start": "-30 days", "end": "-5 days"}}}
    assert _both(tmp_path, rows, {"lt": [LATEST, previous]}).value is True


def test_the_mean_of_a_window_holding_a_censored_value_is_unknown(tmp_path: Path) -> None:
    got = _both(
        tmp_path, [_crp("4", "2009-02-27"), _crp("<5")], {"mean": {"select": CRP, "window": "30 days"}}
    )
    assert (got.value, got.why) == (
        None, "CRP <5 mg/L on 2009-03-01 is censored: the mean of the window is not known",
    )  # fmt: skip


def test_arithmetic_over_a_censored_value_is_unknown_naming_it(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"add": [LATEST, "1 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_a_percent_change_from_a_censored_baseline_is_unknown(tmp_path: Path) -> None:
    baseline = {"min": {"select": CRP, "window": {"start": "-30 days", "end": "-1 days"}}}
    got = _both(
        tmp_path,
        [_crp("<5", "2009-02-20"), _crp("8")],
        {"pct_change": {"value": LATEST, "baseline": baseline}},
    )
    assert got.value is None and "CRP <5 mg/L on 2009-02-20 is censored" in (got.why or "")


@pytest.mark.parametrize(
    ("value", "expected"), [("<5", True), ("<=6", True), ("<7", None), (">6", False), (">=6", None)]
)
def test_normal_decides_on_a_censored_value_by_its_whole_range(
    tmp_path: Path, value: str, expected: bool | None
) -> None:
    got = _both(tmp_path, [_crp(value)], {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    assert got.value is expected


def test_normal_with_the_lab_range_decides_on_a_censored_value(tmp_path: Path) -> None:
    rows = [_crp("<5", ref_low=0, ref_high=10)]
    got = _both(tmp_path, rows, {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    assert got.value is None  # <5 may be below the lab's low end of 0
    assert got.why == "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known"


def test_a_selector_condition_matches_a_censored_value_only_when_its_whole_range_does(tmp_path: Path) -> None:
    high = {"kind": "lab", "code": "1988-5", "where": {"value": {"gt": "10 mg/L"}}}
    rows = [_crp(">20", "2009-02-20"), _crp(">5", "2009-02-25"), _crp("<5")]
    got = _both(tmp_path, rows, {"count": {"select": high, "window": "30 days"}})
    assert got.value == 1.0


def test_a_rule_that_is_a_censored_value_has_its_bound_and_qualifier(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], LATEST)
    assert (got.value, got.qualifier, got.why, got.note) == (5.0, "<", None, "CRP <5 mg/L on 2009-03-01")


def test_a_rule_that_is_an_exact_value_has_no_qualifier(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("4")], LATEST)
    assert (got.value, got.qualifier) == (4.0, None)


def test_mas_counts_a_ferritin_above_the_assay_range_as_above_its_threshold(tmp_path: Path) -> None:
    rows = [{"patient_id": "P1", "kind": "lab", "code": "2276-4", "occurred_at": "2009-03-01", "value": ">2000",
             "unit": "ng/mL"}]  # fmt: skip
    ferritin = {"latest": {"select": {"kind": "lab", "code": "2276-4"}, "within": "3 days"}}
    assert _both(tmp_path, rows, {"gt": [ferritin, "684 ng/mL"]}).value is True


# ---- the decision itself -----------------------------------------------------------------------

OPS = ["gt", "ge", "lt", "le", "eq", "ne"]
QUALIFIED = st.tuples(st.sampled_from([None, "<", "<=", ">", ">="]), st.sampled_from([-1.0, 0.0, 5.0, 10.0]))


def _sql_decision(
    con: duckdb.DuckDBPyConnection, op: str, a: tuple[str | None, float], b: tuple[str | None, float]
) -> Any:
    def lit(q: str | None) -> str:
        return "NULL::VARCHAR" if q is None else f"'{q}'"

    expr = censored.decide_sql(op, censored.of_sql("a", "aq"), censored.of_sql("b", "bq"))
    row = con.execute(
        f"SELECT {expr} FROM (SELECT {a[1]}::DOUBLE AS a, {lit(a[0])} AS aq, {b[1]}::DOUBLE AS b, {lit(b[0])} AS bq)"
    ).fetchone()
    assert row is not None
    return row[0]


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(OPS), a=QUALIFIED, b=QUALIFIED)
def test_the_sql_decision_is_the_python_one(
    op: str, a: tuple[str | None, float], b: tuple[str | None, float]
) -> None:
    with duckdb.connect() as con:
        assert _sql_decision(con, op, a, b) == censored.decide(
            op, censored.of(a[1], a[0]), censored.of(b[1], b[0])
        )


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(OPS), a=QUALIFIED, b=QUALIFIED, x=st.sampled_from([-2.0, -1.0, 0.0, 2.5, 5.0, 7.5, 10.0, 12.0]),
       y=st.sampled_from([-2.0, -1.0, 0.0, 2.5, 5.0, 7.5, 10.0, 12.0]))  # fmt: skip
def test_a_decided_comparison_holds_for_every_number_of_the_ranges(
    op: str, a: tuple[str | None, float], b: tuple[str | None, float], x: float, y: float
) -> None:
    """Soundness: when decided, the answer is that of any two numbers the values stand for."""
    ra, rb = censored.of(a[1], a[0]), censored.of(b[1], b[0])

    def inside(v: float, r: censored.Range) -> bool:
        above = v > r.lo if r.lo_open else v >= r.lo
        below = v < r.hi if r.hi_open else v <= r.hi
        return above and below

    found = censored.decide(op, ra, rb)
    xv = x if a[0] is not None else a[1]
    yv = y if b[0] is not None else b[1]
    if found is not None and inside(xv, ra) and inside(yv, rb):
        plain = {
            "gt": xv > yv,
            "ge": xv >= yv,
            "lt": xv < yv,
            "le": xv <= yv,
            "eq": xv == yv,
            "ne": xv != yv,
        }[op]
        assert found is plain


def test_two_exact_values_compare_as_numbers() -> None:
    for op in OPS:
        for x, y in ((1.0, 2.0), (2.0, 2.0), (3.0, 2.0)):
            plain = {"gt": x > y, "ge": x >= y, "lt": x < y, "le": x <= y, "eq": x == y, "ne": x != y}[op]
            assert censored.decide(op, censored.of(x, None), censored.of(y, None)) is plain


def test_a_censored_range_is_open_at_a_strict_bound() -> None:
    assert censored.of(5.0, "<") == censored.Range(-math.inf, False, 5.0, True)
    assert censored.of(5.0, ">=") == censored.Range(5.0, False, math.inf, False)


def test_an_undecided_comparison_is_none() -> None:
    assert censored.decide("le", censored.of(5.0, "<"), censored.of(3.0, None)) is None


def test_a_history_decides_on_a_censored_value_as_a_state_does(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "r", {"le": [LATEST, "10 mg/L"]})
    rules = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "s.duckdb", [_crp("<5"), _crp("<=20", "2009-03-05")]) as store:
        found = [
            (i["start"].date().isoformat(), i["value"]) for i in Session(store, rules).history("P1", ["r"])
        ]
    assert found == [("2009-03-01", True), ("2009-03-05", "unknown")]


def test_a_history_gives_a_censored_rule_value_as_its_bound_and_qualifier(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "r", LATEST)
    rules = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "s.duckdb", [_crp("<5"), _crp("5", "2009-03-02")]) as store:
        found = [
            (i["value"], i["qualifier"], i["reason"]) for i in Session(store, rules).history("P1", ["r"])
        ]
    assert found == [(5.0, "<", None), (5.0, None, None)]
