"""A cohort's baseline over censored values (CRP ``<5``): each is known as a range, so min and max
are exact or a bound with its qualifier, the median is given only where every number the values
may be gives the same one, and the mean, which every number moves, is not determined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cli.cohort import _cell_text
from tests.cohort_support import COHORT, RULES, build_store, run, write
from tests.support import raw_connection
from timeline.cohort.report import Report, _censored_summary, _summary
from timeline.ingest import append_rows
from timeline.language.loader import load_rules
from timeline.store import QUALIFIER, Store

# the index dates of the population's four patients (tests/fixtures/cohort)
INDEX = {"P1": "2009-01-01", "P2": "2009-03-01", "P3": "2009-06-01", "P7": "2010-01-01"}
CRP_RULE = """id: baseline_crp
version: "1"
description: CRP at the index (test).
citation: test
define:
  latest: {select: {kind: lab, code: 1988-5}, within: 30 days}
"""


def _report(tmp_path: Path, values: dict[str, str], older: bool = False) -> Report:
    """The fixture cohort with a CRP baseline of ``values``; ``older``: on a store as a version
    before censored values made it (no qualifier column)."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "baseline_crp.yaml").write_text(CRP_RULE, encoding="utf-8")
    store = build_store(tmp_path / "s.duckdb")
    rows: list[dict[str, Any]] = [
        {
            "patient_id": p,
            "kind": "lab",
            "code": "1988-5",
            "occurred_at": INDEX[p],
            "value": v,
            "unit": "mg/L",
        }
        for p, v in values.items()
    ]
    with Store.open(store, write=True) as s:
        append_rows(s, rows, author="tests")
    if older:
        with raw_connection(store) as con:
            con.execute(f"ALTER TABLE events DROP COLUMN {QUALIFIER}")
    text = COHORT.read_text(encoding="utf-8").replace(
        "  - {rule: age_at, label: Age at index}",
        "  - {rule: age_at, label: Age at index}\n  - {rule: baseline_crp, label: CRP at index}",
    )
    return run(store, write(tmp_path, text), load_rules([rules]))


def test_a_baseline_of_exact_values_has_the_plain_figures(tmp_path: Path) -> None:
    stats = (
        _report(tmp_path, {"P1": "4", "P2": "6", "P3": "8", "P7": "9"}).cell("baseline.baseline_crp").stats
    )
    assert stats == {"mean": 6.75, "median": 7.0, "min": 4.0, "max": 9.0, "unit": "mg/L"}


def test_a_baseline_on_a_store_made_before_censored_values_has_the_plain_figures(tmp_path: Path) -> None:
    values = {"P1": "4", "P2": "6", "P3": "8", "P7": "9"}
    stats = _report(tmp_path, values, older=True).cell("baseline.baseline_crp").stats
    assert stats == {"mean": 6.75, "median": 7.0, "min": 4.0, "max": 9.0, "unit": "mg/L"}


def test_a_baseline_counts_a_censored_value_as_known(tmp_path: Path) -> None:
    c = _report(tmp_path, {"P1": "<5", "P2": "6", "P3": "8", "P7": "9"}).cell("baseline.baseline_crp")
    assert (c.n, c.N, c.unknown) == (4, 4, 0)


def test_a_baseline_median_the_censored_values_do_not_move_is_given(tmp_path: Path) -> None:
    stats = (
        _report(tmp_path, {"P1": "<5", "P2": "6", "P3": "8", "P7": "9"}).cell("baseline.baseline_crp").stats
    )
    assert stats == {
        "mean": None, "median": 7.0, "min": 5.0, "min_qualifier": "<", "max": 9.0, "max_qualifier": None,
        "censored": 1, "not_determined": ["mean"], "unit": "mg/L",
    }  # fmt: skip


def test_a_baseline_median_the_censored_values_move_is_not_determined(tmp_path: Path) -> None:
    stats = (
        _report(tmp_path, {"P1": ">5", "P2": "8", "P3": "9", "P7": "10"}).cell("baseline.baseline_crp").stats
    )
    assert (stats["median"], stats["not_determined"]) == (None, ["mean", "median"])
    assert (stats["min"], stats["min_qualifier"], stats["max"], stats["max_qualifier"]) == (
        5.0,
        ">",
        10.0,
        ">=",
    )


def test_a_baseline_with_censored_values_reads_as_text_with_their_qualifiers(tmp_path: Path) -> None:
    c = _report(tmp_path, {"P1": "<5", "P2": "6", "P3": "8", "P7": "9"}).cell("baseline.baseline_crp")
    assert _cell_text(c) == "mean not determined, median 7, range <5–9 mg/L (n 4/4, 1 censored)"


def test_a_baseline_with_censored_values_keeps_the_qualifiers_in_json(tmp_path: Path) -> None:
    c = _report(tmp_path, {"P1": "<5", "P2": "6", "P3": "8", "P7": "9"}).cell("baseline.baseline_crp")
    stats = json.loads(json.dumps(c.to_json()))["stats"]
    assert (stats["min"], stats["min_qualifier"]) == (5.0, "<")


def test_a_summary_without_censored_values_is_the_plain_one() -> None:
    assert _censored_summary([(1.0, None), (3.0, None)]) == _summary([1.0, 3.0])


@pytest.mark.parametrize(
    ("values", "median"),
    [
        ([(6.0, "<"), (6.0, None), (8.0, None)], 6.0),  # below the median's value, at its bound
        ([(6.0, "<="), (6.0, None), (8.0, None)], 6.0),
        ([(6.0, ">"), (6.0, None), (3.0, None)], 6.0),
        ([(6.0, ">"), (5.0, None), (3.0, None)], 5.0),
        ([(6.0, "<"), (5.0, None), (3.0, None)], None),  # may be below 5 or between 5 and 6
        ([(5.0, "<"), (8.0, None)], None),  # the middle two's mean moves with the censored one
        ([(5.0, "<"), (5.0, ">")], None),
    ],
)
def test_a_median_is_given_only_where_no_number_of_the_censored_values_moves_it(
    values: list[tuple[float, str | None]], median: float | None
) -> None:
    assert _censored_summary(values)["median"] == median


def test_the_mean_of_censored_values_is_not_determined() -> None:
    assert _censored_summary([(5.0, "<"), (5.0, None)])["mean"] is None
