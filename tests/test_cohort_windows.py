"""Assessment windows around time points (docs/cohorts.md, "Time"): where an outcome's rule is
unknown at a time point's date, the report takes its state on the nearest day of the window
with a recorded event on which it is known (the earlier of two as near), within follow-up and,
for an on_drug denominator, before the discontinuation.

Every patient starts anakinra on 2020-01-01 (the index); 3 months is 2020-04-01. The outcome's
rule, ``afebrile_week``, is unknown without a temperature in the 7 days up to the date.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from tests.cohort_support import RULES, rules, write
from timeline.cohort.report import Report, end_of, run_cohort
from timeline.cohort.spec import CohortError, load_cohort
from timeline.engine.evaluate import Session
from timeline.ingest import append_rows
from timeline.store import Store

TARGET = date(2020, 4, 1)

COHORT = """\
cohort: windows
version: "1"
index:
  first: {kind: medication_start, drug: anakinra}
drug: anakinra
population:
  include: [has_sjia]
follow_up:
  end: [end_of_follow_up, death]
time_points: [3 months, 6 months]
assessment_window: 30 days
outcomes:
  - {id: afebrile_all, rule: afebrile_week, denominator: all, at: [3 months]}
  - {id: afebrile_on_drug, rule: afebrile_week, denominator: on_drug, at: [3 months]}
  - {id: afebrile_exact, rule: afebrile_week, denominator: all, at: [3 months], assessment_window: none}
adverse_events: false
"""


def _rows(
    pid: str, temps: dict[str, float], extra: list[dict[str, str]] | None = None
) -> list[dict[str, str]]:
    rows = [
        {"patient_id": pid, "kind": "birth", "occurred_at": "2012-01-01", "sex": "female"},
        {"patient_id": pid, "kind": "diagnosis", "occurred_at": "2019-12-01", "code": "sJIA"},
        {"patient_id": pid, "kind": "medication_start", "occurred_at": "2020-01-01", "drug": "anakinra",
         "dose": "100", "dose_unit": "mg", "frequency": "daily"},
    ]  # fmt: skip
    for day, cel in temps.items():
        rows.append(
            {
                "patient_id": pid,
                "kind": "body_temperature",
                "occurred_at": day,
                "value": str(cel),
                "unit": "Cel",
            }
        )
    return rows + (extra or [])


PATIENTS = {
    # unknown on 04-01; known on 03-20 (12 days before) and 04-06 (5 days after): 04-06
    "NEAR": _rows("NEAR", {"2020-03-20": 36.8, "2020-04-06": 36.9}),
    # 03-25 (febrile) and 04-08 (afebrile), 7 days either side: the earlier one
    "TIE": _rows("TIE", {"2020-03-25": 38.6, "2020-04-08": 36.9}),
    # exactly 30 days before: inside the window (its bounds are inclusive)
    "EDGE_IN": _rows("EDGE_IN", {"2020-03-02": 36.9}),
    # 31 days after: outside
    "EDGE_OUT": _rows("EDGE_OUT", {"2020-05-02": 36.9}),
    # a record the day after the end of follow-up (04-03) is not an assessment of the study
    "AFTER_FU": _rows(
        "AFTER_FU", {"2020-04-04": 36.9},
        [{"patient_id": "AFTER_FU", "kind": "end_of_follow_up", "occurred_at": "2020-04-03"}],
    ),
    # ...one on the day follow-up ends is
    "AT_FU_END": _rows(
        "AT_FU_END", {"2020-04-05": 36.9},
        [{"patient_id": "AT_FU_END", "kind": "end_of_follow_up", "occurred_at": "2020-04-05"}],
    ),
    # discontinued on 04-03 (off the drug from that day): a record that day counts for `all`,
    # not for `on_drug`
    "STOPPED": _rows(
        "STOPPED", {"2020-04-03": 36.9},
        [{"patient_id": "STOPPED", "kind": "discontinuation", "occurred_at": "2020-04-03", "drug": "anakinra",
          "reason": "remission"}],
    ),
    # known on the date itself: that state, whatever nearer days say
    "ON_DATE": _rows("ON_DATE", {"2020-04-01": 38.4, "2020-04-02": 36.9}),
    # a febrile day nearer than an afebrile one: the nearest known day, whatever its value
    "FALSE_NEARER": _rows("FALSE_NEARER", {"2020-04-03": 38.9, "2020-04-12": 36.9}),
}  # fmt: skip


def _store(path: Path, rows: list[dict[str, str]]) -> Path:
    with Store.create(path) as s:
        append_rows(s, rows, author="window tests", source="test")
    return path


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("windows")
    store = _store(tmp / "s.duckdb", [r for rows in PATIENTS.values() for r in rows])
    return store, write(tmp, COHORT)


@pytest.fixture(scope="module")
def report(windows: tuple[Path, Path]) -> Report:
    store, cohort = windows
    rs = rules()
    with Store.open(store) as s:
        return run_cohort(Session(s, rs), load_cohort(cohort, rs))


def _value(report: Report, pid: str, outcome: str) -> tuple[object, date | None]:
    f = report.patients[pid]
    o = next(o for o in report.spec.outcomes if o.id == outcome)
    r = f.values.get((o.rule, o.where("3_months")))
    return (None if r is None else r.value), f.assessed.get((outcome, "3_months"))


def test_an_unknown_outcome_takes_the_nearest_known_day_of_the_window(report: Report) -> None:
    assert _value(report, "NEAR", "afebrile_all") == (True, date(2020, 4, 6))


def test_of_two_days_as_near_the_earlier_is_taken(report: Report) -> None:
    assert _value(report, "TIE", "afebrile_all") == (False, date(2020, 3, 25))


def test_a_record_exactly_at_the_windows_edge_is_inside_it(report: Report) -> None:
    assert _value(report, "EDGE_IN", "afebrile_all") == (True, date(2020, 3, 2))


def test_a_record_a_day_past_the_windows_edge_is_not_used(report: Report) -> None:
    assert _value(report, "EDGE_OUT", "afebrile_all") == (None, None)


def test_a_record_after_the_end_of_follow_up_is_not_used(report: Report) -> None:
    assert _value(report, "AFTER_FU", "afebrile_all") == (None, None)


def test_a_record_on_the_day_follow_up_ends_is_used(report: Report) -> None:
    assert _value(report, "AT_FU_END", "afebrile_all") == (True, date(2020, 4, 5))


def test_a_record_after_the_discontinuation_counts_for_all_but_not_for_on_drug(report: Report) -> None:
    assert _value(report, "STOPPED", "afebrile_all") == (True, date(2020, 4, 3))
    assert _value(report, "STOPPED", "afebrile_on_drug") == (None, None)
    assert "STOPPED" in report.cell("outcome.afebrile_on_drug.3_months").unknown_ids


def test_no_day_before_the_index_is_an_assessment(tmp_path: Path) -> None:
    """2 weeks after the index, ±30 days reaches 16 December: a record of 20 December is
    before the index (1 January) and is not taken, though the rule would be known there."""
    store = _store(tmp_path / "s.duckdb", _rows("PRE", {"2019-12-20": 36.9}))
    text = COHORT.replace("[3 months, 6 months]", "[2 weeks]").replace("at: [3 months]", "at: [2 weeks]")
    rs = rules()
    with Store.open(store) as s:
        rep = run_cohort(Session(s, rs), load_cohort(write(tmp_path, text), rs))
    assert rep.cell("outcome.afebrile_all.2_weeks").unknown_ids == ["PRE"]
    assert rep.patients["PRE"].assessed == {}


def test_the_index_day_is_not_an_assessment_of_a_later_time_point(tmp_path: Path) -> None:
    """Helper 49: 'fever at 5 days ±7 days' read 22/22 Valencia children on the index day,
    before the first dose. A temperature on the index day (1 January) is the baseline's."""
    store = _store(tmp_path / "s.duckdb", _rows("IDX", {"2020-01-01": 36.9}))
    text = COHORT.replace("[3 months, 6 months]", "[5 days]").replace("at: [3 months]", "at: [5 days]")
    text = text.replace("assessment_window: 30 days", "assessment_window: 7 days")
    rs = rules()
    with Store.open(store) as s:
        rep = run_cohort(Session(s, rs), load_cohort(write(tmp_path, text), rs))
    assert rep.cell("outcome.afebrile_all.5_days").unknown_ids == ["IDX"]
    assert rep.patients["IDX"].assessed == {}


def test_a_state_known_on_the_time_points_date_is_kept(report: Report) -> None:
    assert _value(report, "ON_DATE", "afebrile_all") == (False, None)


def test_the_nearest_known_day_is_taken_whatever_its_value(report: Report) -> None:
    assert _value(report, "FALSE_NEARER", "afebrile_all") == (False, date(2020, 4, 3))


def test_an_outcome_without_a_window_reads_the_time_points_date_only(report: Report) -> None:
    c = report.cell("outcome.afebrile_exact.3_months")
    assert c.unknown_ids == [
        "AFTER_FU", "AT_FU_END", "EDGE_IN", "EDGE_OUT", "FALSE_NEARER", "NEAR", "STOPPED", "TIE"
    ]  # fmt: skip
    assert "assessment_window" not in c.stats


def test_the_cell_states_its_window_and_how_many_were_assessed_on_another_day(report: Report) -> None:
    c = report.cell("outcome.afebrile_all.3_months")
    assert (c.n, c.N, c.unknown) == (4, 9, 2)
    assert c.stats["assessment_window"] == {"before": "30 days", "after": "30 days"}
    assert c.stats["assessed_off_target"] == 6
    assert c.denominator.endswith("; assessment window ±30 days")


# ---- the file


def _spec_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(CohortError) as exc:
        load_cohort(write(tmp_path, text), rules())
    assert exc.value.exit_code == 8
    return "\n".join(str(p) for p in exc.value.problems)


def test_a_window_may_differ_before_and_after_the_time_point(tmp_path: Path) -> None:
    text = COHORT.replace(
        "assessment_window: 30 days", "assessment_window: {before: 2 weeks, after: 10 days}"
    )
    spec = load_cohort(write(tmp_path, text), rules())
    w = spec.outcomes[0].window
    assert w is not None and str(w) == "−2 weeks / +10 days"


def test_an_outcomes_window_replaces_the_files(tmp_path: Path) -> None:
    spec = load_cohort(write(tmp_path, COHORT), rules())
    assert [o.window is None for o in spec.outcomes] == [False, False, True]


def test_a_zero_window_is_the_time_points_date_alone(tmp_path: Path) -> None:
    spec = load_cohort(
        write(tmp_path, COHORT.replace("assessment_window: 30 days", "assessment_window: 0 days")), rules()
    )
    assert all(o.window is None for o in spec.outcomes)


def test_a_negative_window_is_refused_at_its_line(tmp_path: Path) -> None:
    err = _spec_error(tmp_path, COHORT.replace("assessment_window: 30 days", "assessment_window: -30 days"))
    assert "cohort.yaml:11:" in err and "a length, zero or more" in err


def test_a_window_in_hours_is_refused(tmp_path: Path) -> None:
    err = _spec_error(tmp_path, COHORT.replace("assessment_window: 30 days", "assessment_window: 12 hours"))
    assert "whole days, weeks, months or years" in err


def test_a_window_mapping_needs_both_sides(tmp_path: Path) -> None:
    err = _spec_error(
        tmp_path, COHORT.replace("assessment_window: 30 days", "assessment_window: {before: 30 days}")
    )
    assert "assessment_window needs after" in err


def test_windows_around_two_time_points_that_share_a_day_are_refused(tmp_path: Path) -> None:
    """3 and 6 months apart are 89–92 days: ±45 days meet for an index on 1 January
    (1 April + 45 days = 16 May; 1 July − 45 days = 17 May: not yet) — ±46 days do."""
    ok = COHORT.replace("assessment_window: 30 days", "assessment_window: 44 days").replace(
        ", at: [3 months]}", "}"
    )
    load_cohort(write(tmp_path, ok), rules())
    bad = ok.replace("assessment_window: 44 days", "assessment_window: 46 days")
    err = _spec_error(tmp_path, bad)
    assert "assessment window ±46 days around 3 months and around 6 months overlap" in err
    assert "cohort.yaml:11:" in err


# ---- the command line


def test_cohort_run_shows_the_window_beside_the_time_point(windows: tuple[Path, Path]) -> None:
    store, cohort = windows
    res = CliRunner().invoke(
        app, ["cohort", "run", str(cohort), "--store", str(store), "--rules", str(RULES)]
    )
    assert res.exit_code == 0, res.output
    assert "3 months ±30 days" in res.output


def test_cohort_explain_names_the_day_the_outcome_was_assessed_on(windows: tuple[Path, Path]) -> None:
    store, cohort = windows
    args = ["cohort", "explain", str(cohort), "NEAR", "outcome.afebrile_all.3_months", "--store", str(store),
            "--rules", str(RULES)]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    tp = data["time_points"][0]
    assert tp["outcomes"]["afebrile_all"]["assessed_on"] == "2020-04-06"
    assert tp["outcomes"]["afebrile_exact"]["assessed_on"] == "2020-04-01"
    assert (
        data["cell"]["explanations"][0]["why"] == "outcome at 3 months (2020-04-01), assessed on 2020-04-06"
    )
    ex = data["cell"]["explanations"][0]["explanation"]
    assert (ex["instant"], ex["tree"]["value"]) == ("2020-04-06T23:59:59.999999Z", True)


def test_cohort_plot_names_each_outcomes_window_in_its_legend(report: Report, tmp_path: Path) -> None:
    from timeline.plots import cohort_plot

    shown = cohort_plot(report, tmp_path / "c.png")["outcomes"]
    assert shown == [  # labelled by their ids: the three read one rule (d8d7de8)
        "afebrile_all [all, ±30 days]",
        "afebrile_on_drug [on_drug, ±30 days]",
        "afebrile_exact [all]",
    ]


def test_a_time_point_in_hours_is_refused(tmp_path: Path) -> None:
    """Helper 49: a time point is read at the end of its date, so 12 and 23 hours were one."""
    err = _spec_error(tmp_path, COHORT.replace("[3 months, 6 months]", "[72 hours, 3 months]"))
    assert (
        "a time point is a date after the index date: whole days, weeks, months or years, not '72 hours'"
        in err
    )


@pytest.mark.parametrize(("first", "second"), [("7 days", "1 week"), ("12 months", "1 year")])
def test_two_time_points_of_one_date_are_refused(tmp_path: Path, first: str, second: str) -> None:
    err = _spec_error(tmp_path, COHORT.replace("[3 months, 6 months]", f"[{first}, {second}]"))
    assert f"time point {second} is the date of {first}: give it once" in err


def test_a_time_point_listed_twice_in_at_is_refused_as_such(tmp_path: Path) -> None:
    err = _spec_error(tmp_path, COHORT.replace("at: [3 months]}", "at: [3 months, 3 months]}", 1))
    assert "'3 months' is listed twice in at" in err
    assert "overlap" not in err


@pytest.mark.parametrize(
    ("window", "shown"),
    [
        ("{before: 0 days, after: 20 days}", "+20 days (after only)"),
        ("{before: 2 weeks, after: 0 days}", "−2 weeks (before only)"),
        ("{before: 1 week, after: 7 days}", "±1 week"),
    ],
)
def test_a_window_reads_as_written(tmp_path: Path, window: str, shown: str) -> None:
    spec = load_cohort(
        write(tmp_path, COHORT.replace("assessment_window: 30 days", f"assessment_window: {window}")), rules()
    )
    assert str(spec.outcomes[0].window) == shown


def test_a_window_side_given_as_none_is_told_to_write_0_days(tmp_path: Path) -> None:
    err = _spec_error(
        tmp_path,
        COHORT.replace("assessment_window: 30 days", "assessment_window: {before: none, after: 30 days}"),
    )
    assert (
        "'none' is not a length of days, weeks, months or years (e.g. 30 days, 2 weeks; 0 days for none)"
        in err
    )


def test_none_turns_a_window_off_whatever_its_case(tmp_path: Path) -> None:
    spec = load_cohort(
        write(tmp_path, COHORT.replace("assessment_window: 30 days", "assessment_window: None")), rules()
    )
    assert spec.outcomes[0].window is None


def test_cohort_explain_of_an_assessed_on_drug_outcome_explains_the_on_drug_rule_too(tmp_path: Path) -> None:
    """With follow_up.on_drug_rule the denominator is that rule at the date: explained beside
    the outcome's rule at the day taken, whose choice skipped days off the drug."""
    store = _store(tmp_path / "s.duckdb", PATIENTS["NEAR"])
    text = COHORT.replace(
        "  end: [end_of_follow_up, death]", "  end: [end_of_follow_up, death]\n  on_drug_rule: on_study_drug"
    )
    cohort = write(tmp_path, text)
    res = CliRunner().invoke(app, ["cohort", "explain", str(cohort), "NEAR", "outcome.afebrile_on_drug.3_months",
                                   "--store", str(store), "--rules", str(RULES), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cell = json.loads(res.output)["cell"]
    assert [e["rule"] for e in cell["explanations"]] == ["afebrile_week", "on_study_drug"]
    assert cell["assessment"].endswith("on which afebrile_week is known and on_study_drug is true")


# ---- the choice, against the rule evaluated day by day

DAYS = [TARGET + timedelta(days=d) for d in range(-40, 41)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    temps=st.dictionaries(st.sampled_from(DAYS), st.sampled_from([36.8, 38.6]), max_size=5),
    stop=st.none() | st.sampled_from(DAYS),
    fu_end=st.none() | st.sampled_from(DAYS),
)
def test_the_report_takes_the_nearest_known_candidate_day(
    tmp_path_factory: pytest.TempPathFactory,
    temps: dict[date, float],
    stop: date | None,
    fu_end: date | None,
) -> None:
    """For any records, stop and end of follow-up: the report's value is the rule's state,
    evaluated on its own (Session.evaluate, one instant at a time), at the end of the nearest
    candidate day on which it is known — the date itself (within the follow-up), or a day of
    the window with a record, on or before the end of follow-up and, for on_drug, before the
    stop; unknown when there is none."""
    extra = []
    if stop is not None:
        extra.append({"patient_id": "R", "kind": "discontinuation", "occurred_at": stop.isoformat(),
                      "drug": "anakinra", "reason": "remission"})  # fmt: skip
    if fu_end is not None:
        extra.append({"patient_id": "R", "kind": "end_of_follow_up", "occurred_at": fu_end.isoformat()})
    rows = _rows("R", {d.isoformat(): v for d, v in temps.items()}, extra)
    tmp = tmp_path_factory.mktemp("prop")
    store = _store(tmp / "s.duckdb", rows)
    rs = rules()
    with Store.open(store) as s:
        sess = Session(s, rs)
        rep = run_cohort(sess, load_cohort(write(tmp, COHORT), rs))
        f = rep.patients["R"]
        last = max(date.fromisoformat(r["occurred_at"]) for r in rows)
        end = min(d for d in (fu_end, last) if d is not None and d >= date(2020, 1, 1))
        record_days = {date.fromisoformat(r["occurred_at"]) for r in rows if r["kind"] != "birth"}

        def state(day: date) -> object:
            q = end_of(day)
            (r,) = sess.evaluate(
                None, ["afebrile_week"], points_sql=f"SELECT 'R' AS patient_id, TIMESTAMP '{q}' AS q"
            )
            return r.value

        for outcome, on_drug in (("afebrile_all", False), ("afebrile_on_drug", True)):
            # past the follow-up's end the date itself is unknown (nothing then is of the study)
            cands = [*([TARGET] if end >= TARGET else []), *sorted(
                (d for d in record_days
                 if abs((d - TARGET).days) <= 30 and d != TARGET and date(2020, 1, 1) <= d <= end
                 and not (on_drug and stop is not None and d >= stop)),
                key=lambda d: (abs((d - TARGET).days), d),
            )]  # fmt: skip
            known = [(d, v) for d in cands if (v := state(d)) is not None]
            want_day, want_value = known[0] if known else (TARGET, state(TARGET) if end >= TARGET else None)
            got_value, got_day = _value(rep, "R", outcome)
            assert got_value == want_value, (outcome, cands, known)
            assert (got_day or TARGET) == want_day, (outcome, cands, known)
    del f


def test_the_windows_choice_does_not_depend_on_the_run_being_batched(windows: tuple[Path, Path]) -> None:
    store, cohort = windows
    rs = rules()
    spec = load_cohort(cohort, rs)
    with Store.open(store) as s:
        whole = run_cohort(Session(s, rs), spec)
        sess = Session(s, rs)
        sess.batch_patients = 3
        batched = run_cohort(sess, spec)
    assert [c.to_json() for c in whole.cells] == [c.to_json() for c in batched.cells]


def test_the_day_of_the_windows_choice_is_the_day_explain_shows(report: Report) -> None:
    assert isinstance(report.patients["NEAR"].assessed[("afebrile_all", "3_months")], date)
    assert not isinstance(report.patients["NEAR"].assessed[("afebrile_all", "3_months")], datetime)
