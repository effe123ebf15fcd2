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
from tests.support import raw_connection
from timeline.engine import censored
from timeline.engine.evaluate import Result, Session
from timeline.language.loader import load_rules
from timeline.moments import parse_at
from timeline.store import QUALIFIER, Store

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


def test_every_patients_history_gives_a_censored_value_as_its_bound_and_qualifier_without_a_reason(
    tmp_path: Path,
) -> None:
    """Session.histories (the set-based history of every patient) decides a censored rule's
    intervals on its bound and qualifier: a censored value is known, so it has no reason, and
    two results of the same bound and qualifier are one interval."""
    write_rule(tmp_path / "rules", "r", LATEST)
    rules = load_rules([tmp_path / "rules"])
    rows = [_crp("<5"), _crp("<5", "2009-03-02"), _crp("5", "2009-03-03")]
    with store_with(tmp_path / "s.duckdb", rows) as store:
        session = Session(store, rules)
        session.histories(["r"])
        found = session.con.execute(
            "SELECT start::DATE::VARCHAR, x, qualifier, why FROM tl_history ORDER BY start"
        ).fetchall()
    assert found == [("2009-03-01", 5.0, "<", None), ("2009-03-03", 5.0, None, None)]


def _states(tmp_path: Path, rows: list[dict[str, Any]], define: Any, **rule: Any) -> tuple[Any, ...]:
    """The rule's state at 2009-03-02 by :meth:`Session.states` (the table a cohort run leaves
    in DuckDB): (value, qualifier, reason), its value ``x`` for a number, ``b`` for a boolean."""
    write_rule(tmp_path / "rules", "r", define, **rule)
    rules = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "s.duckdb", rows) as store:
        session = Session(store, rules)
        session.states("SELECT 'P1' AS patient_id, TIMESTAMP '2009-03-02 23:59:59' AS q", ["r"])
        b, x, qualifier, why = session.con.execute("SELECT b, x, qualifier, why FROM tl_states").fetchone()
    return (x if b is None else b), qualifier, why


def test_the_states_table_gives_a_censored_rule_value_as_its_bound_and_qualifier(tmp_path: Path) -> None:
    assert _states(tmp_path, [_crp("<5")], LATEST) == (5.0, "<", None)


def test_the_states_table_gives_a_censored_bound_in_the_rule_unit(tmp_path: Path) -> None:
    assert _states(tmp_path, [_crp(">=200")], LATEST, unit="mg/dL") == (20.0, ">=", None)


def test_the_states_table_gives_an_exact_value_without_a_qualifier(tmp_path: Path) -> None:
    assert _states(tmp_path, [_crp("4")], LATEST) == (4.0, None, None)


def test_the_states_table_gives_an_undecided_comparison_as_unknown_naming_the_value(tmp_path: Path) -> None:
    assert _states(tmp_path, [_crp("<5")], {"le": [LATEST, "3 mg/L"]}) == (
        None,
        None,
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_the_states_table_of_a_store_made_before_censored_values_has_no_qualifier(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "r", LATEST)
    rules = load_rules([tmp_path / "rules"])
    store_with(tmp_path / "s.duckdb", [_crp("4")]).close()
    with raw_connection(tmp_path / "s.duckdb") as con:
        con.execute(f"ALTER TABLE events DROP COLUMN {QUALIFIER}")
    with Store.open(tmp_path / "s.duckdb") as store:
        session = Session(store, rules)
        session.states("SELECT 'P1' AS patient_id, TIMESTAMP '2009-03-02 23:59:59' AS q", ["r"])
        found = session.con.execute("SELECT x, qualifier, why FROM tl_states").fetchall()
    assert found == [(4.0, None, None)]


def test_the_states_table_agrees_with_state_and_evaluate_on_a_censored_rule(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "crp", LATEST)
    write_rule(tmp_path / "rules", "r", {"rule": "crp"})
    rules = load_rules([tmp_path / "rules"])
    days = ["2009-02-27", "2009-03-01", "2009-03-02", "2009-03-04"]
    rows = [_crp("<5"), _crp("7", "2009-03-02"), _crp(">=9", "2009-03-04")]
    with store_with(tmp_path / "s.duckdb", rows) as store:
        session = Session(store, rules)
        replayed = [
            (r.rule_id, r.at, r.value, r.qualifier, r.why) for d in days for r in session.state("P1", d)
        ]
        evaluated = [
            (r.rule_id, d, r.value, r.qualifier, r.why)
            for d in days
            for r in session.evaluate([("P1", parse_at(d)[0])])
        ]
        session.states(
            " UNION ALL ".join(f"SELECT 'P1' AS patient_id, TIMESTAMP '{parse_at(d)[0]}' AS q" for d in days)
        )
        table = session.con.execute(
            "SELECT rule_id, strftime(q, '%Y-%m-%d'), x, qualifier, why FROM tl_states ORDER BY q, rule_id"
        ).fetchall()
    assert replayed == evaluated == table
    assert [t[2:4] for t in table if t[0] == "r"] == [(None, None), (5.0, "<"), (7.0, None), (9.0, ">=")]


# ---- a censored value read through a rule, at_anchor or coalesce -------------------------------

ANAKINRA_START = {
    "patient_id": "P1", "kind": "medication_start", "drug": "anakinra", "occurred_at": "2009-03-01T12:00",
    "dose": 100, "dose_unit": "mg",
}  # fmt: skip
AT_START = {
    "at_anchor": {"expr": LATEST, "anchor": {"first": {"kind": "medication_start", "drug": "anakinra"}}}
}


def _through_rule(tmp_path: Path, value: str, op: str, threshold: str, **crp_rule: Any) -> Result:
    """``r`` compares the rule ``crp`` (the latest CRP) with the threshold."""
    write_rule(tmp_path / "rules", "crp", LATEST, **crp_rule)
    return _both(tmp_path, [_crp(value)], {op: [{"rule": "crp"}, threshold]})


def test_a_censored_value_read_through_a_rule_is_decided_as_when_read_directly(tmp_path: Path) -> None:
    got = _through_rule(tmp_path, "<5", "le", "10 mg/L")
    assert (got.value, got.why, got.note) == (True, None, "<5 ≤ 10 mg/L")


def test_a_censored_value_at_its_bound_read_through_a_rule_is_below_it(tmp_path: Path) -> None:
    assert _through_rule(tmp_path, "<10", "le", "10 mg/L").value is True


def test_a_value_at_most_its_bound_read_through_a_rule_is_not_below_it(tmp_path: Path) -> None:
    got = _through_rule(tmp_path, "<=10", "lt", "10 mg/L")
    assert (got.value, got.why) == (
        None,
        "CRP <=10 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_a_censored_value_read_through_a_rule_with_its_own_unit_is_compared_in_it(tmp_path: Path) -> None:
    got = _through_rule(tmp_path, "<5", "le", "0.5 mg/dL", unit="mg/dL")
    assert (got.value, got.note) == (True, "<0.5 ≤ 0.5 mg/dL")


def test_a_rule_reading_a_censored_rule_shows_its_bound_and_qualifier(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "crp", LATEST)
    got = _both(tmp_path, [_crp("<5")], {"rule": "crp"})
    assert (got.value, got.qualifier, got.why) == (5.0, "<", None)


def test_arithmetic_over_a_censored_rule_stays_unknown(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "crp", LATEST)
    got = _both(tmp_path, [_crp("<5")], {"le": [{"add": [{"rule": "crp"}, "1 mg/L"]}, "100 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_a_censored_value_at_the_anchor_is_decided_by_its_whole_range(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5"), ANAKINRA_START], {"le": [AT_START, "10 mg/L"]})
    assert (got.value, got.why) == (True, None)


def test_an_undecided_censored_value_at_the_anchor_names_the_anchor_and_the_value(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5"), ANAKINRA_START], {"gt": [AT_START, "3 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "at the anakinra (2009-03-01): CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_a_censored_value_at_the_anchor_is_shown_with_its_qualifier(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">=200"), ANAKINRA_START], AT_START)
    assert (got.value, got.qualifier) == (200.0, ">=")


def test_coalesce_takes_a_censored_value_as_the_first_with_a_value(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"coalesce": [LATEST, "50 mg/L"]})
    assert (got.value, got.qualifier, got.why) == (5.0, "<", None)


def test_a_censored_value_through_coalesce_is_decided_by_its_whole_range(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<10")], {"lt": [{"coalesce": [LATEST, "50 mg/L"]}, "10 mg/L"]})
    assert got.value is True


def test_a_censored_value_through_coalesce_undecided_is_unknown_naming_it(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<=10")], {"lt": [{"coalesce": [LATEST, "50 mg/L"]}, "10 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "CRP <=10 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_coalesce_passes_over_a_missing_value_to_a_censored_one(tmp_path: Path) -> None:
    huge = {"latest": {"select": {**CRP, "where": {"value": {"gt": "1000 mg/L"}}}, "within": "30 days"}}
    got = _both(tmp_path, [_crp("<5")], {"le": [{"coalesce": [huge, LATEST]}, "10 mg/L"]})
    assert got.value is True


# ---- first, last, min and max over a window holding a censored value ----------------------------

WINDOW = "30 days"


def _window(fn: str) -> dict[str, Any]:
    return {fn: {"select": CRP, "window": WINDOW}}


def test_the_last_value_is_exact_when_an_earlier_one_is_censored(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5", "2009-02-20"), _crp("8")], _window("last"))
    assert (got.value, got.qualifier) == (8.0, None)


def test_the_first_value_is_exact_when_a_later_one_is_censored(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("8", "2009-02-20"), _crp("<5")], _window("first"))
    assert (got.value, got.qualifier) == (8.0, None)


def test_a_censored_last_value_is_decided_by_its_whole_range(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("8", "2009-02-20"), _crp("<10")], {"le": [_window("last"), "10 mg/L"]})
    assert (got.value, got.note) == (True, "<10 ≤ 10 mg/L")


def test_a_censored_first_value_undecided_is_unknown_naming_it(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<=10", "2009-02-20"), _crp("8")], {"lt": [_window("first"), "10 mg/L"]})
    assert (got.value, got.why) == (
        None, "CRP <=10 mg/L on 2009-02-20 is censored: the first of the window is not known",
    )  # fmt: skip


def test_a_censored_last_value_is_shown_with_its_qualifier(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("8", "2009-02-20"), _crp(">200")], _window("last"))
    assert (got.value, got.qualifier) == (200.0, ">")


def test_the_max_of_a_value_below_a_limit_and_a_greater_exact_one_is_that_one(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5", "2009-02-20"), _crp("8")], _window("max"))
    assert (got.value, got.qualifier, got.why) == (8.0, None, None)


def test_the_max_of_a_value_below_a_limit_and_an_exact_one_at_it_is_that_one(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<10", "2009-02-20"), _crp("10")], _window("max"))
    assert (got.value, got.qualifier) == (10.0, None)


def test_the_max_of_a_value_above_a_limit_and_an_exact_one_is_at_least_that_one(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">5", "2009-02-20"), _crp("8")], _window("max"))
    assert (got.value, got.qualifier) == (8.0, ">=")


@pytest.mark.parametrize(("op", "threshold", "expected"), [("gt", 7, True), ("ge", 8, True), ("gt", 8, None)])
def test_the_max_of_a_value_above_a_limit_is_decided_by_its_range(
    tmp_path: Path, op: str, threshold: float, expected: bool | None
) -> None:
    got = _both(tmp_path, [_crp(">5", "2009-02-20"), _crp("8")], {op: [_window("max"), f"{threshold} mg/L"]})
    assert got.value is expected


def test_an_undecided_max_names_the_censored_value(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">5", "2009-02-20"), _crp("8")], {"gt": [_window("max"), "9 mg/L"]})
    assert got.why == "CRP >5 mg/L on 2009-02-20 is censored: the max of the window is not known"


def test_the_max_bounded_on_both_sides_is_written_as_its_censored_bound(tmp_path: Path) -> None:
    """max(<10, 5) lies in [5, 10): written <10, a true statement, so ge 5 stays unknown."""
    rows = [_crp("<10", "2009-02-20"), _crp("5")]
    got = _both(tmp_path / "value", rows, _window("max"))
    assert (got.value, got.qualifier) == (10.0, "<")
    assert _both(tmp_path / "compared", rows, {"ge": [_window("max"), "5 mg/L"]}).value is None


def test_the_min_of_a_value_above_a_limit_and_a_smaller_exact_one_is_that_one(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">5", "2009-02-20"), _crp("3")], _window("min"))
    assert (got.value, got.qualifier) == (3.0, None)


def test_the_min_of_a_value_below_a_limit_is_below_it(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5", "2009-02-20"), _crp("8")], {"lt": [_window("min"), "5 mg/L"]})
    assert got.value is True


def test_the_sum_of_a_window_holding_a_censored_value_stays_unknown(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("8", "2009-02-20"), _crp("<5")], {"le": [_window("sum"), "100 mg/L"]})
    assert got.value is None


def test_the_sum_of_a_window_holding_censored_values_names_the_first(tmp_path: Path) -> None:
    rows = [_crp("8", "2009-02-18"), _crp(">=200", "2009-02-20"), _crp("<5")]
    got = _both(tmp_path, rows, {"le": [_window("sum"), "100 mg/L"]})
    assert got.why == "CRP >=200 mg/L on 2009-02-20 is censored: the sum of the window is not known"


# ---- min_of, max_of over a censored operand: the extreme of the ranges, as min and max ----------


def _of(fn: str, value: str, other: str) -> Any:
    """``fn`` of the latest CRP (``value``, set by the test) and the constant ``other``."""
    return {fn: [LATEST, other]}


@pytest.mark.parametrize(
    ("fn", "value", "other", "expected"),
    [
        ("max_of", "<5", "8 mg/L", (8.0, None)),
        ("max_of", "<10", "10 mg/L", (10.0, None)),  # the bound equal to the other: exact
        ("max_of", "<=10", "10 mg/L", (10.0, None)),
        ("max_of", "<10", "5 mg/L", (10.0, "<")),  # in [5, 10): written as its censored bound
        ("max_of", ">5", "8 mg/L", (8.0, ">=")),
        ("max_of", ">10", "10 mg/L", (10.0, ">")),
        ("max_of", ">=10", "10 mg/L", (10.0, ">=")),
        ("min_of", ">5", "3 mg/L", (3.0, None)),
        ("min_of", ">10", "10 mg/L", (10.0, None)),  # the bound equal to the other: exact
        ("min_of", ">=10", "10 mg/L", (10.0, None)),
        ("min_of", "<5", "8 mg/L", (5.0, "<")),
        ("min_of", "<10", "10 mg/L", (10.0, "<")),
        ("min_of", "<=10", "10 mg/L", (10.0, "<=")),
        ("min_of", ">5", "8 mg/L", (5.0, ">")),  # in (5, 8]: written as its censored bound
    ],
)
def test_min_of_and_max_of_a_censored_operand_are_the_extreme_of_the_ranges(
    tmp_path: Path, fn: str, value: str, other: str, expected: tuple[float, str | None]
) -> None:
    got = _both(tmp_path, [_crp(value)], _of(fn, value, other))
    assert (got.value, got.qualifier) == expected
    assert got.why is None


def test_max_of_a_value_below_a_limit_and_a_greater_one_decides_as_that_one(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp("<5")], {"gt": [_of("max_of", "<5", "8 mg/L"), "7 mg/L"]})
    assert (got.value, got.why) == (True, None)


def test_max_of_a_value_above_a_limit_is_decided_by_its_range(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">5")], {"ge": [_of("max_of", ">5", "8 mg/L"), "8 mg/L"]})
    assert (got.value, got.note) == (True, ">=8 ≥ 8 mg/L")


def test_an_undecided_max_of_names_the_censored_operand(tmp_path: Path) -> None:
    got = _both(tmp_path, [_crp(">5")], {"gt": [_of("max_of", ">5", "8 mg/L"), "9 mg/L"]})
    assert (got.value, got.why) == (
        None,
        "CRP >5 mg/L on 2009-03-01 is censored: its exact value is not known",
    )


def test_max_of_notes_a_censored_operand_with_its_qualifier(tmp_path: Path) -> None:
    assert _both(tmp_path, [_crp("<5")], _of("max_of", "<5", "8 mg/L")).note == "max(<5, 8)"


def test_max_of_two_censored_operands_is_the_extreme_of_both(tmp_path: Path) -> None:
    rows = [_crp("<10", "2009-02-20"), _crp(">=12")]
    got = _both(tmp_path, rows, {"max_of": [LATEST, _window("first")]})
    assert (got.value, got.qualifier) == (12.0, ">=")


def test_max_of_a_censored_and_an_unknown_operand_is_unknown(tmp_path: Path) -> None:
    recent = {"latest": {"select": CRP, "within": "1 day"}}  # the CRP of 2009-03-01 is too old
    got = _both(tmp_path, [_crp("<5")], {"max_of": [LATEST, recent]})
    assert (got.value, got.qualifier, got.why) == (
        None, None,
        "CRP <5 mg/L on 2009-03-01 is censored: its exact value is not known; "
        "no CRP within 1 day: the latest, on 2009-03-01, is too old",
    )  # fmt: skip


def test_max_of_a_censored_rule_in_another_unit_is_given_in_the_first_operands_unit(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", "crp", LATEST, unit="mg/dL")
    got = _both(tmp_path, [_crp("<5")], {"max_of": ["0.8 mg/L", {"rule": "crp"}]})
    assert (got.value, got.qualifier) == (5.0, "<")


# ---- the extreme of censored values ---------------------------------------------------------------

VALUES = st.lists(QUALIFIED, min_size=1, max_size=4)


def _sql_extreme(con: duckdb.DuckDBPyConnection, fn: str, values: list[tuple[str | None, float]]) -> Any:
    rows = ", ".join(f"({v}::DOUBLE, {'NULL' if q is None else repr(q)}::VARCHAR)" for q, v in values)
    exact, q, bound = censored.extreme_sql(fn, "v", "q")
    row = con.execute(f"SELECT {exact}, {q}, {bound} FROM (VALUES {rows}) t(v, q)").fetchone()
    assert row is not None
    return row


@settings(max_examples=300, deadline=None)
@given(fn=st.sampled_from(["min", "max"]), values=VALUES)
def test_the_sql_extreme_is_the_python_one(fn: str, values: list[tuple[str | None, float]]) -> None:
    x, q = censored.extreme(fn, [(v, qq) for qq, v in values])
    with duckdb.connect() as con:
        assert _sql_extreme(con, fn, values) == ((x, None, None) if q is None else (None, q, x))


def _sql_row_extreme(con: duckdb.DuckDBPyConnection, fn: str, values: list[tuple[str | None, float]]) -> Any:
    """:func:`censored.extreme_row_sql` over one row holding the values as columns v0, q0, …"""
    cols = ", ".join(
        f"{v}::DOUBLE AS v{i}, {'NULL' if q is None else repr(q)}::VARCHAR AS q{i}"
        for i, (q, v) in enumerate(values)
    )
    stages, (exact, q, bound) = censored.extreme_row_sql(fn, [(f"v{i}", f"q{i}") for i in range(len(values))])
    src = f"SELECT {cols}"
    for stage in stages:
        src = f"SELECT *, {stage} FROM ({src})"
    row = con.execute(f"SELECT {exact}, {q}, {bound} FROM ({src})").fetchone()
    assert row is not None
    return row


@settings(max_examples=300, deadline=None)
@given(fn=st.sampled_from(["min", "max"]), values=VALUES)
def test_the_sql_extreme_of_a_rows_operands_is_the_python_one(
    fn: str, values: list[tuple[str | None, float]]
) -> None:
    x, q = censored.extreme(fn, [(v, qq) for qq, v in values])
    with duckdb.connect() as con:
        assert _sql_row_extreme(con, fn, values) == ((x, None, None) if q is None else (None, q, x))


NUMBERS = [-2.0, -1.0, -0.5, 0.0, 2.5, 5.0, 7.5, 10.0, 12.0]


@settings(max_examples=300, deadline=None)
@given(
    fn=st.sampled_from(["min", "max"]),
    values=VALUES,
    picks=st.lists(st.sampled_from(NUMBERS), min_size=4, max_size=4),
)
def test_the_extreme_holds_every_extreme_of_numbers_the_values_stand_for(
    fn: str, values: list[tuple[str | None, float]], picks: list[float]
) -> None:
    """Soundness: any numbers the values may be have their min or max inside the range
    ``extreme`` gives (exact: that very number)."""
    numbers = []
    for (q, v), pick in zip(values, picks, strict=False):
        n = v if q is None else pick
        r = censored.of(v, q)
        if not ((n > r.lo if r.lo_open else n >= r.lo) and (n < r.hi if r.hi_open else n <= r.hi)):
            return  # this pick is not a number the value stands for
        numbers.append(n)
    x, q = censored.extreme(fn, [(v, qq) for qq, v in values])
    got = max(numbers) if fn == "max" else min(numbers)
    assert censored.decide("eq", censored.of(got, None), censored.of(x, q)) is not False


def test_an_exact_extreme_is_the_number_of_the_values() -> None:
    assert censored.extreme("max", [(5.0, "<"), (8.0, None)]) == (8.0, None)
    assert censored.extreme("max", [(5.0, "<"), (5.0, None)]) == (5.0, None)
    assert censored.extreme("min", [(5.0, ">"), (5.0, None)]) == (5.0, None)


def test_a_tie_of_a_strict_and_a_closed_bound_gives_the_extreme_its_range() -> None:
    assert censored.extreme("max", [(5.0, ">"), (5.0, ">=")]) == (5.0, ">")
    assert censored.extreme("max", [(5.0, "<"), (5.0, "<=")]) == (5.0, "<=")
    assert censored.extreme("min", [(5.0, "<"), (5.0, "<=")]) == (5.0, "<")
    assert censored.extreme("min", [(5.0, ">"), (5.0, ">=")]) == (5.0, ">=")
