"""Where a comparison of age or time since an event with a constant flips
(`timeline.engine.crossings`): the days found must include every day on which the
comparison's value, as the evaluators compute it, changes."""

from __future__ import annotations

import operator
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.engine_support import write_rule
from timeline.engine.compiler import Compiler
from timeline.engine.crossings import MAX_DAYS, PER_DAYS, crossings
from timeline.engine.replay import Reference, rnd
from timeline.language import ast
from timeline.language.loader import RuleSet, load_rules

CMP: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq, "ne": operator.ne,
}  # fmt: skip
BIRTH = datetime(2000, 1, 1)
BIRTH_EVENT = {
    "seq": 1,
    "asserted_seq": 1,
    "kind": "birth",
    "occurred_at": BIRTH,
    "event_id": "b",
    "patient_id": "X",
}


def rules_of(define: Any) -> RuleSet:
    directory = Path(tempfile.mkdtemp())
    write_rule(directory, "r", define)
    return load_rules([directory])


def crossing_of(define: Any) -> tuple[RuleSet, ast.Compare, tuple[int, ...] | None]:
    rules = rules_of(define)
    node = rules.rules["r"].define
    assert isinstance(node, ast.Compare)
    found = crossings(rules)(node)
    return rules, node, None if found is None else tuple(sorted({d for c in found for d in c.days}))


def leaves_crossed(define: Any) -> list[tuple[str, tuple[int, ...]]] | None:
    """Each age / time_since the comparison reads (by its anchor's selector) and its days."""
    rules = rules_of(define)
    node = rules.rules["r"].define
    assert isinstance(node, ast.Compare)
    found = crossings(rules)(node)
    if found is None:
        return None
    return sorted((c.anchor.select.name, c.days) for c in found)


def test_age_reaching_five_years_flips_on_day_1827() -> None:
    _, _, days = crossing_of({"ge": [{"age": "years"}, 5]})
    assert days is not None and 1827 in days and 1826 in days


def test_a_constant_on_the_left_is_crossed_like_one_on_the_right() -> None:
    _, _, left = crossing_of({"le": [5, {"age": "years"}]})
    _, _, right = crossing_of({"ge": [{"age": "years"}, 5]})
    assert left == right


def test_a_threshold_beyond_two_hundred_years_is_never_crossed() -> None:
    _, _, days = crossing_of({"ge": [{"age": "years"}, 250]})
    assert days == ()


def test_a_comparison_of_two_ages_has_no_crossing_of_its_own() -> None:
    _, _, days = crossing_of({"gt": [{"age": "years"}, {"age": "years"}]})
    assert days is None


def test_a_comparison_with_a_value_that_depends_on_the_events_has_no_crossing_of_its_own() -> None:
    at_first_lab = {"at_anchor": {"expr": {"age": "years"}, "anchor": {"first": {"kind": "lab"}}}}
    _, _, days = crossing_of({"gt": [{"age": "years"}, {"add": [at_first_lab, 1]}]})
    assert days is None


def test_a_sum_of_two_changing_numbers_has_no_crossing_of_its_own() -> None:
    since = {"time_since": {"first": {"kind": "lab"}, "unit": "days"}}
    assert leaves_crossed({"gt": [{"add": [{"age": "days"}, since]}, 10]}) is None


def test_coalesce_of_two_times_since_crosses_for_each_anchor() -> None:
    first_lab = {"time_since": {"first": {"kind": "lab"}, "unit": "days"}}
    last_fever = {"time_since": {"last": {"kind": "finding", "code": "fever"}, "unit": "days"}}
    found = leaves_crossed({"lt": [{"coalesce": [first_lab, last_fever]}, 10]})
    assert found is not None and len(found) == 2
    assert all(10 in days and 9 in days for _, days in found)


def test_the_least_of_two_changing_numbers_crosses_where_either_does() -> None:
    since = {"time_since": {"first": {"kind": "lab"}, "unit": "days"}}
    found = leaves_crossed({"ge": [{"min_of": [{"age": "days"}, since]}, 30]})
    assert found is not None and [name for name, _ in found] == ["birth", "lab"]
    assert all(30 in days for _, days in found)


def test_a_constant_divided_by_age_is_kept_on_the_anchor_day_where_it_is_undefined() -> None:
    _, _, days = crossing_of({"lt": [{"div": [10, {"age": "days"}]}, 1]})
    assert days is not None and {0, 1, 10, 11}.issubset(days)


def test_a_rule_with_a_declared_unit_is_crossed_in_that_unit() -> None:
    directory = Path(tempfile.mkdtemp())
    write_rule(directory, "age_mo", {"age": "years"}, unit="mo")
    write_rule(directory, "r", {"ge": [{"rule": "age_mo"}, 60]})
    rules = load_rules([directory])
    node = rules.rules["r"].define
    assert isinstance(node, ast.Compare)
    found = crossings(rules)(node)
    assert found is not None and [1827 in c.days for c in found] == [True]


def test_a_count_that_rises_and_falls_is_crossed_both_ways() -> None:
    # age × (10 − age) > 16 holds while 2 < age < 8: two flips, not one
    directory = Path(tempfile.mkdtemp())
    write_rule(directory, "a", {"age": "years"})
    write_rule(directory, "r", {"gt": [{"mul": [{"rule": "a"}, {"sub": [10, {"rule": "a"}]}]}, 16]})
    rules = load_rules([directory])
    node = rules.rules["r"].define
    assert isinstance(node, ast.Compare)
    found = crossings(rules)(node)
    assert found is not None and {731, 2922}.issubset(found[0].days)


def test_a_count_in_a_divisor_is_crossed_on_both_sides_of_its_pole() -> None:
    # 10 / (days − 30) > 1 holds from day 31 to day 39
    _, _, days = crossing_of({"gt": [{"div": [10, {"sub": [{"age": "days"}, 30]}]}, 1]})
    assert days is not None and {30, 31, 40}.issubset(days)


def test_a_percent_change_of_age_is_crossed() -> None:
    # from a baseline of 4 years, +25% is 5 years: day 1827
    _, _, days = crossing_of({"ge": [{"pct_change": {"value": {"age": "years"}, "baseline": 4}}, 25]})
    assert days is not None and 1827 in days


def test_a_flat_slope_is_crossed_where_the_nine_digit_rounding_flips_it() -> None:
    # 1e-8 × age rounds to 9 digits: ≥ 5e-8 from 4.95 years (day 1808), not from 5 years
    rules, node, days = crossing_of({"ge": [{"mul": [{"age": "years"}, 1e-8]}, 5e-8]})
    assert days is not None
    ref = Reference(rules, [BIRTH_EVENT])
    first = next(d for d in range(MAX_DAYS) if _value_on_day(ref, node, d) is True)
    assert first in days


def _value_on_day(ref: Reference, node: ast.Compare, d: int) -> bool | float | None:
    return ref.evaluate(node, datetime.combine((BIRTH + timedelta(days=d)).date(), datetime.min.time())).value


WRAPPERS = ["none", "mul", "add", "sub_from", "clip", "div"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    unit=st.sampled_from(["years", "months", "days"]),
    op=st.sampled_from(sorted(CMP)),
    wrapper=st.sampled_from(WRAPPERS),
    k=st.sampled_from([2, 12, 0.5, 365.25]),
    threshold=st.one_of(st.integers(0, 400), st.floats(0, 400, allow_nan=False).map(lambda x: round(x, 3))),
    left=st.booleans(),
)
# age in years × 365.25 > 1: a flip the 6-digit rounding of the count used to hide (age is unrounded)
@example(unit="years", op="gt", wrapper="mul", k=365.25, threshold=1, left=True)
def test_every_day_the_comparison_changes_is_a_crossing_day(
    unit: str, op: str, wrapper: str, k: float, threshold: float, left: bool
) -> None:
    leaf: Any = {"age": unit}
    expr: Any = {
        "none": leaf,
        "mul": {"mul": [leaf, k]},
        "add": {"add": [leaf, k]},
        "sub_from": {"sub": [k * 100, leaf]},
        "clip": {"clip": {"value": leaf, "low": 1, "high": 300}},
        "div": {"div": [leaf, k]},
    }[wrapper]
    rules, node, days = crossing_of({op: [expr, threshold] if left else [threshold, expr]})
    assert days is not None
    # every day's value by the replay's own arithmetic, then the flips checked on the replay
    per, t = PER_DAYS[unit], rnd(float(threshold), 9)
    f: Callable[[float], float] = {
        "none": lambda x: x,
        "mul": lambda x: x * k,
        "add": lambda x: x + k,
        "sub_from": lambda x: k * 100 - x,
        "clip": lambda x: max(min(x, 300), 1),
        "div": lambda x: x / k,
    }[wrapper]
    compare = CMP[op]
    values = [
        compare(rnd(f(d / per), 9), t) if left else compare(t, rnd(f(d / per), 9))
        for d in range(MAX_DAYS + 1)
    ]
    flips = [d for d in range(1, MAX_DAYS + 1) if values[d] != values[d - 1]]
    missing = sorted(set(flips) - set(days))
    ref = Reference(rules, [BIRTH_EVENT])
    for d in flips[:3]:  # the arithmetic above is the replay's
        assert (_value_on_day(ref, node, d - 1), _value_on_day(ref, node, d)) == (values[d - 1], values[d])
    assert not missing, f"flips on days {missing[:5]} not among {days}"


def _counts(op: str, unit_left: str, unit_right: str) -> dict[str, Any]:
    return {
        op: [
            {"time_since": {"last": {"kind": "lab"}, "unit": unit_left}},
            {"time_since": {"first": {"kind": "finding", "code": "fever"}, "unit": unit_right}},
        ]
    }


def test_two_counts_of_days_in_one_unit_compared_are_a_step() -> None:
    # "the last lab after the first fever": each count grows, their difference does not
    assert Compiler(rules_of(_counts("lt", "days", "days")), "SELECT 1").stepwise("r")


def test_two_counts_in_different_units_compared_are_not_a_step() -> None:
    assert not Compiler(rules_of(_counts("lt", "days", "months")), "SELECT 1").stepwise("r")


def test_a_count_compared_with_a_constant_is_not_taken_for_a_step() -> None:
    since = {"time_since": {"last": {"kind": "lab"}, "unit": "days"}}
    assert not Compiler(rules_of({"lt": [since, 10]}), "SELECT 1").stepwise("r")


def _event(seq: int, kind: str, at: datetime, code: str | None = None) -> dict[str, Any]:
    return {
        "seq": seq, "asserted_seq": seq, "event_id": f"e{seq}", "patient_id": "X", "kind": kind,
        "occurred_at": at, "ended_at": None, "code": code, "drug": None, "dose_unit": None, "present": None,
    }  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lab=st.integers(0, 800),
    fever=st.integers(0, 800),
    minutes=st.tuples(st.integers(0, 1439), st.integers(0, 1439)),
    unit=st.sampled_from(sorted(PER_DAYS)),
    op=st.sampled_from(sorted(CMP)),
)
def test_two_counts_in_one_unit_compare_alike_on_every_later_day(
    lab: int, fever: int, minutes: tuple[int, int], unit: str, op: str
) -> None:
    """What makes such a comparison a step (compiler.counts_compared): once both anchors are
    recorded, its value is the same on every later day, to 200 years — the replay's value, as
    both evaluators compute the counts (whole days between dates, divided per unit, rounded)."""
    rules = rules_of(_counts(op, unit, unit))
    start = datetime(2008, 1, 30)
    events = [
        _event(1, "lab", start + timedelta(days=lab, minutes=minutes[0]), "1988-5"),
        _event(2, "finding", start + timedelta(days=fever, minutes=minutes[1]), "fever"),
    ]
    ref = Reference(rules, events)
    first = max(e["occurred_at"] for e in events)
    days = [0, 1, 2, 27, 28, 29, 30, 31, 59, 365, 366, 1461, 3652, MAX_DAYS - 800]
    values = {ref.rule("r", first + timedelta(days=d)).value for d in days}
    assert len(values) == 1
