"""n/N counts on the synthetic cohort of tests/fixtures/cohort, worked out by hand.

The seven patients (events.csv):
  P1  sJIA, anakinra 2009-01-01 first line; afebrile from 01-20; joints 0 (03-25), 1 (06-20),
      0 (2010-01-01); injection-site reaction G1; MAS before the index (and one after follow-up);
      end of follow-up 2010-06-01.
  P2  sJIA, methotrexate 2009-02-01 then anakinra 2009-03-01; afebrile from 04-15; joints 2
      (05-20), 0 (09-01); MAS on anakinra; skin reaction G3; anakinra discontinued 2009-10-15
      (severe skin reaction); end of follow-up 2010-12-31.
  P3  sJIA, anakinra 2009-06-01 first line; febrile throughout; one joint exam at the index;
      MAS on anakinra; died 2009-08-01.
  P4  anakinra without sJIA (not included); P5 sJIA with CNS involvement (excluded);
  P6  sJIA, never on anakinra (no index event).
  P7  sJIA, anakinra 2010-01-01 first line, afebrile at the index; joints 0, 1 (03-20),
      0 (08-01, the last event); anakinra stopped 05-01 and restarted 06-01 (an interruption).
"""

from __future__ import annotations

import gc
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from tests.cohort_support import COHORT, EVENTS, build_store, counts, rules, run, write
from tests.cohort_support import RULES as RULES_DIR
from timeline.cohort.report import Report, run_cohort
from timeline.cohort.spec import CohortError, load_cohort
from timeline.engine.evaluate import Session
from timeline.ingest import append_rows, correct, ingest_file
from timeline.store import Store, utc_now


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("cohort") / "cohort.duckdb")


@pytest.fixture(scope="module")
def report(cohort_store: Path) -> Report:
    return run(cohort_store)


def nN(report: Report, cell: str) -> tuple[int, int, int]:
    c = report.cell(cell)
    return c.n, c.N, c.unknown


def test_population_needs_an_index_event_every_inclusion_and_no_exclusion(report: Report) -> None:
    assert nN(report, "population.index") == (6, 7, 0)
    assert report.cell("population.included").numerator_ids == ["P1", "P2", "P3", "P7"]
    assert nN(report, "population.included") == (4, 6, 0)
    assert report.cell("population.exclude.cns_ever").numerator_ids == ["P5"]
    assert report.patients["P4"].reasons == ["inclusion has_sjia false"]
    assert report.patients["P6"].status == "no_index"


def test_subgroup_by_no_dmard_before_the_index(report: Report) -> None:
    assert report.cell("subgroup.first_line").numerator_ids == ["P1", "P3", "P7"]
    assert report.groups["first_line"][1] == ["P1", "P3", "P7"]


def test_unknown_outcomes_are_counted_apart_never_as_no(report: Report) -> None:
    c = report.cell("outcome.arthritis_all.6_months")
    assert (c.n, c.N, c.unknown) == (1, 4, 2)
    assert c.numerator_ids == ["P1"]
    assert c.unknown_ids == ["P3", "P7"]  # P3: exam too old; P7: exam 103 days old
    assert c.text() == "1/4 (25%), 2 unknown"


def test_denominator_all_keeps_every_patient(report: Report) -> None:
    assert [nN(report, f"outcome.arthritis_all.{tp}") for tp in ("3_months", "6_months", "12_months")] == [
        (2, 4, 1),
        (1, 4, 2),
        (0, 4, 3),
    ]


def test_denominator_followed_drops_patients_whose_follow_up_ended(report: Report) -> None:
    # P3 died before 3 months; P7's last event (2010-08-01) is before its 12-month date.
    assert report.cell("outcome.arthritis_followed.3_months").denominator_ids == ["P1", "P2", "P7"]
    assert nN(report, "outcome.arthritis_followed.12_months") == (0, 2, 1)
    assert report.cell("outcome.arthritis_followed.12_months").denominator_ids == ["P1", "P2"]


def test_denominator_on_drug_drops_discontinued_patients_but_not_interruptions(report: Report) -> None:
    # P2 discontinued 2009-10-15 (before its 12-month date 2010-03-01); P7's stop was followed
    # by a restart, so P7 stays on the drug at 6 months.
    assert report.cell("outcome.arthritis_on_drug.6_months").denominator_ids == ["P1", "P2", "P7"]
    assert report.cell("outcome.arthritis_on_drug.12_months").denominator_ids == ["P1"]


def test_an_outcome_cell_names_who_its_denominator_leaves_out_and_why(report: Report) -> None:
    # P2 discontinued 2009-10-15; P3 died 2009-08-01; P7's last event (2010-08-01) is before 2011-01-01
    c = report.cell("outcome.arthritis_on_drug.12_months")
    assert c.left_out_ids == {"anakinra discontinued": ["P2"], "follow-up ended": ["P3", "P7"]}
    assert c.stats["left_out"] == {"anakinra discontinued": 1, "follow-up ended": 2}


def test_an_outcome_cell_under_the_all_policy_leaves_no_one_out(report: Report) -> None:
    assert report.cell("outcome.arthritis_all.12_months").left_out_ids == {}


def test_policies_are_defined_in_words_with_the_report(report: Report) -> None:
    assert "follow-up ends at the first end_of_follow_up or death" in report.policies["followed"]
    assert "anakinra not discontinued on or before the time point date" in report.policies["on_drug"]
    assert report.cell("outcome.arthritis_on_drug.3_months").denominator.startswith("on_drug at 3 months: ")


def test_subgroup_cells_use_the_subgroup_as_denominator(report: Report) -> None:
    assert nN(report, "outcome.arthritis_all.3_months@first_line") == (1, 3, 1)


def test_time_to_event_counts_the_first_instant_the_rule_holds(report: Report) -> None:
    c = report.cell("tte.afebrile")
    assert (c.n, c.N) == (3, 4)
    days = {p: report.patients[p].tte["afebrile"].days for p in ("P1", "P2", "P3", "P7")}
    assert days == {"P1": 19.0, "P2": 45.0, "P3": 62.0, "P7": 0.0}


def test_time_to_event_censors_at_death(report: Report) -> None:
    p3 = report.patients["P3"].tte["afebrile"]
    assert (p3.event, p3.censored_by) == (False, "death")


def test_kaplan_meier_of_the_cohort(report: Report) -> None:
    # events at 0, 19, 45 days; P3 censored at 62: S = 3/4, then 3/4·2/3 = 1/2, then 1/4; S is
    # exactly 1/2 from 19 to 45, whose middle is the median (as R's survfit and SAS take it)
    c = report.cell("tte.afebrile")
    assert c.stats["km_median_days"] == 32.0
    assert c.stats["km_reached_by_window_end"] == pytest.approx(0.75)
    steps = report.curves[("afebrile", "all")].steps
    assert [round(s.survival, 4) for s in steps] == [0.75, 0.5, 0.25, 0.25]


def test_baseline_numbers_at_the_index(report: Report) -> None:
    c = report.cell("baseline.age_at")
    days = [3288, 1447, 2162, 1461]  # index − birth, in days (2000, 2004, 2008 are leap years)
    ages = [round(d / 365.25, 6) for d in days]
    assert c.stats["mean"] == round(sum(ages) / 4, 2)
    assert (c.stats["min"], c.stats["max"]) == (round(min(ages), 2), round(max(ages), 2))
    fu = report.cell("baseline.follow_up").stats
    assert (fu["min"], fu["max"]) == (round(61 / 30.4375, 2), round(670 / 30.4375, 2))
    # from the days, rounded once: 61, 212, 516 and 670 days
    assert (fu["mean"], fu["median"]) == (round(1459 / 4 / 30.4375, 2), round(364 / 30.4375, 2))


def test_adverse_events_by_term_and_grade_from_the_index(report: Report) -> None:
    # P2's nausea (before the index) and P4's headache (not in the population) are not counted
    assert nN(report, "ae.any.any_grade") == (2, 4, 0)
    assert report.cell("ae.skin_reaction.grade_3").numerator_ids == ["P2"]
    assert counts(report.cell("ae.injection_site_reaction.grade_1").stats) == {"events": 1}
    with pytest.raises(Exception, match="no cell"):
        report.cell("ae.nausea.any_grade")


def test_the_adverse_event_cells_say_they_count_any_drug_and_after_a_discontinuation(report: Report) -> None:
    assert report.cell("ae.any.any_grade").denominator == (
        "the group (adverse events of any drug, or none named, from the index to the end of follow-up, "
        "after a discontinuation of the study drug too)"
    )


@pytest.fixture(scope="module")
def ae_on_drug(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """P2 (anakinra from 2009-03-01, discontinued 2009-10-15 after a skin reaction on 10-10)
    with two more adverse events: one on the day of the discontinuation, one after it."""
    tmp = tmp_path_factory.mktemp("ae_on_drug")
    path = build_store(tmp / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(
            s,
            [{"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-10-15", "term": "urticaria", "grade": 2},
             {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-11-20", "term": "otitis media", "grade": 2}],
            author="t", source="test",
        )  # fmt: skip
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", "drug: anakinra\nadverse_events: on_drug\nmas:", 1
    )
    return run(path, write(tmp, text))


def test_adverse_events_on_drug_count_up_to_the_discontinuation_day_included(ae_on_drug: Report) -> None:
    assert ae_on_drug.cell("ae.skin_reaction.grade_3").numerator_ids == ["P2"]
    assert ae_on_drug.cell("ae.urticaria.grade_2").numerator_ids == ["P2"]


def test_adverse_events_on_drug_leave_out_those_after_the_discontinuation(ae_on_drug: Report) -> None:
    with pytest.raises(Exception, match="no cell"):
        ae_on_drug.cell("ae.otitis_media.any_grade")
    assert [ae["term"] for ae in ae_on_drug.patients["P2"].adverse_events] == ["skin reaction", "urticaria"]


def test_adverse_events_on_drug_say_so_in_their_denominator(ae_on_drug: Report) -> None:
    assert ae_on_drug.cell("ae.any.any_grade").denominator == (
        "the group (adverse events of any drug, or none named, from the index while on anakinra: "
        "up to its discontinuation, that day included, or the end of follow-up)"
    )


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("on_drug", "adverse_events: on_drug counts adverse events up to the study drug's discontinuation"),
        ("{drug: study}", "adverse_events: drug: study counts the adverse events attributed to the study drug (the AE's drug)"),
    ],
    ids=["on_drug", "drug-study"],
)  # fmt: skip
def test_adverse_events_on_drug_or_of_the_study_drug_need_the_study_drug(
    tmp_path: Path, setting: str, what: str
) -> None:
    text = (
        COHORT.read_text(encoding="utf-8")
        .replace("first: {kind: medication_start, drug: anakinra}", "first: {kind: diagnosis, code: sJIA}")
        .replace("mas:", f"adverse_events: {setting}\ndiscontinuations: false\nmas:", 1)
    )
    with pytest.raises(CohortError) as info:
        load_cohort(write(tmp_path, text), rules())
    assert f"{what}, and needs the study drug (drug: NAME, or drug: index for each patient's own)" in [
        p.message for p in info.value.problems
    ]


def test_adverse_events_take_true_false_or_on_drug(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("mas:", "adverse_events: on_durg\nmas:", 1)
    with pytest.raises(CohortError) as info:
        load_cohort(write(tmp_path, text), rules())
    assert [p.message for p in info.value.problems] == [
        "adverse_events is true, false, on_drug or {until, drug}, not 'on_durg' (did you mean 'on_drug'?)"
    ]


def test_discontinuations_by_reason(report: Report) -> None:
    assert nN(report, "discontinuation.any") == (1, 4, 0)
    assert report.cell("discontinuation.severe_skin_reaction").numerator_ids == ["P2"]
    assert nN(report, "discontinuation.severe_skin_reaction@first_line") == (0, 3, 0)


def test_mas_episodes_before_the_index_and_on_the_drug(report: Report) -> None:
    # P1's episode after the end of follow-up is outside the study
    assert (report.cell("mas.any").n, report.cell("mas.any").stats["episodes"]) == (3, 3)
    assert report.cell("mas.before_index").numerator_ids == ["P1"]
    assert report.cell("mas.on_drug").numerator_ids == ["P2", "P3"]
    assert report.cell("mas.off_drug").n == 0


def test_every_cell_carries_the_manifest_and_patient_ids(report: Report) -> None:
    data = report.to_json()
    assert data["manifest"]["high_water"] == 55
    assert data["manifest"]["cohort"]["id"] == "synthetic_anakinra"
    assert all({"n", "N", "unknown", "numerator_ids", "denominator"} <= set(c) for c in data["cells"])


def test_as_known_at_reads_the_record_before_later_batches(tmp_path: Path) -> None:
    path = build_store(tmp_path / "s.duckdb")
    with Store.open(path, write=True) as s:
        before = s.con.execute("SELECT max(recorded_at) FROM batches").fetchone()[0]  # type: ignore[index]
        append_rows(
            s,
            [{"patient_id": "P1", "kind": "discontinuation", "occurred_at": "2009-05-01", "drug": "anakinra",
              "reason": "remission"}],
            author="later", source="test",
        )  # fmt: skip
    rs = rules()
    spec = load_cohort(COHORT, rs)
    with Store.open(path) as s:
        now = run_cohort(Session(s, rs), spec)
        then = run_cohort(Session(s, rs, as_known_at=before), spec)
    assert now.cell("discontinuation.any").numerator_ids == ["P1", "P2"]
    assert then.cell("discontinuation.any").numerator_ids == ["P2"]
    assert then.manifest["high_water"] == 55


def test_of_two_index_events_at_one_instant_the_one_asserted_later_is_the_index(tmp_path: Path) -> None:
    """As in the rules (a `first` anchor takes the one asserted later), corrected or not."""
    path = build_store(tmp_path / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(
            s,
            [{"event_id": "p1-ana-again", "patient_id": "P1", "kind": "medication_start", "occurred_at": "2009-01-01",
              "drug": "anakinra", "dose": 100, "dose_unit": "mg", "frequency": "daily"}],
            author="later", source="test",
        )  # fmt: skip
        correct(s, "p1-ana", {"note": "first dose at the clinic"}, reason="note", author="later")
    assert run(path).patients["P1"].index_event == "p1-ana-again"


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """P7 (anakinra from 2010-01-01) with a recorded discontinuation on 2010-02-01 (an adverse
    event) before its stop on 05-01 and restart on 06-01."""
    path = build_store(tmp_path_factory.mktemp("restart") / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(
            s,
            [{"patient_id": "P7", "kind": "discontinuation", "occurred_at": "2010-02-01", "drug": "anakinra",
              "reason": "injection-site reaction"}],
            author="t", source="test",
        )  # fmt: skip
    return run(path)


def test_a_recorded_discontinuation_ends_the_course_though_the_drug_is_restarted(restarted: Report) -> None:
    p7 = restarted.patients["P7"]
    assert (str(p7.disc_date), p7.disc_reason) == ("2010-02-01", "injection-site reaction")
    assert "P7" in restarted.cell("discontinuation.any").numerator_ids


def test_a_patient_restarted_after_a_discontinuation_is_off_the_drug_for_the_on_drug_denominator(
    restarted: Report,
) -> None:
    assert "P7" not in restarted.cell("outcome.arthritis_on_drug.3_months").denominator_ids


def test_a_discontinuation_lists_its_events_up_to_the_restart(restarted: Report) -> None:
    """The later stop (05-01) belongs to the discontinued course, the restart begins another."""
    events = restarted.patients["P7"].disc_events
    assert len(events) == 2 and events[1] == "p7-stop"


def test_follow_up_may_stay_open_to_the_as_known_at_date(cohort_store: Path, tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "  end: [end_of_follow_up, death]", "  end: [end_of_follow_up, death]\n  otherwise: open"
    )
    rep = run(cohort_store, write(tmp_path, text))
    assert rep.patients["P7"].fu_end_reason is not None and rep.patients["P7"].fu_end_reason.startswith(
        "open"
    )
    assert "P7" in rep.cell("outcome.arthritis_followed.12_months").denominator_ids


def test_an_open_follow_up_ends_on_the_store_zones_date_of_the_as_known_at_moment(tmp_path: Path) -> None:
    # 23:00 UTC is already the next day in Kiritimati (UTC+14), whatever the machine's TZ
    path = tmp_path / "kiritimati.duckdb"
    with Store.create(path, timezone="Pacific/Kiritimati") as s:
        ingest_file(s, EVENTS, author="cohort tests")
    text = COHORT.read_text(encoding="utf-8").replace(
        "  end: [end_of_follow_up, death]", "  end: [end_of_follow_up, death]\n  otherwise: open"
    )
    # tomorrow at 23:00 UTC: after the ingest whatever the hour now, so every batch is seen (today
    # at 23:00 was before an ingest run between 23:00 and midnight UTC: the test failed then)
    moment = datetime.combine(utc_now().date() + timedelta(days=1), time(23))
    rs = rules()
    with Store.open(path) as s:
        rep = run_cohort(Session(s, rs, as_known_at=moment), load_cohort(write(tmp_path, text), rs))
    assert (
        rep.patients["P7"].fu_end_reason
        == f"open: still followed as known at {moment.date() + timedelta(days=1)}"
    )


def _in_batches(cohort_store: Path, progress: list[str] | None = None) -> Report:
    rs = rules()
    with Store.open(cohort_store) as s:
        session = Session(s, rs, batch_patients=2)
        return run_cohort(
            session,
            load_cohort(COHORT, rs),
            progress=(lambda stage, frac: progress.append(stage)) if progress is not None else None,
        )


def test_cohort_run_in_batches_of_patients_gives_the_same_table(cohort_store: Path, report: Report) -> None:
    batched = _in_batches(cohort_store)
    assert batched.to_json()["cells"] == report.to_json()["cells"]


def test_cohort_run_shows_its_progress_batch_by_batch(cohort_store: Path) -> None:
    seen: list[str] = []
    _in_batches(cohort_store, seen)
    batches = [s for s in seen if ": patients, batch " in s]
    assert "population: patients, batch 1 of " in batches[0]
    n = int(batches[0].rsplit(" of ", 1)[1])
    assert n > 1 and f"population: patients, batch {n} of {n}" in batches


def test_cohort_run_leaves_no_progress_hook_on_the_session(cohort_store: Path) -> None:
    rs = rules()
    with Store.open(cohort_store) as s:
        session = Session(s, rs, batch_patients=2)
        run_cohort(session, load_cohort(COHORT, rs), progress=lambda stage, frac: None)
        assert session.progress is None


def test_cohort_run_keeps_no_copy_of_the_events(cohort_store: Path) -> None:
    """What a cohort run leaves in the session's connection is per patient, point or event
    of interest, never a copy of the timeline (all 43 columns of every event of 100k patients
    held ~5 GB for as long as the session lived)."""
    rs = rules()
    with Store.open(cohort_store) as s:
        run_cohort(Session(s, rs), load_cohort(COHORT, rs))
        n_events = s.con.execute("SELECT count(*) FROM events").fetchone()
        left = s.con.execute(
            "SELECT table_name, estimated_size FROM duckdb_tables() WHERE temporary"
        ).fetchall()
        assert n_events is not None
        assert [name for name, rows in left if rows >= n_events[0]] == []


def test_cohort_run_works_without_the_cycle_collector(cohort_store: Path) -> None:
    """The collector's full passes over a run's millions of acyclic objects cost 17% of a
    run at 1M patients; it is off while the run works."""
    rs = rules()
    seen: list[bool] = []
    with Store.open(cohort_store) as s:
        run_cohort(
            Session(s, rs), load_cohort(COHORT, rs), progress=lambda stage, frac: seen.append(gc.isenabled())
        )
    assert seen
    assert not any(seen)


@pytest.mark.parametrize("enabled", [True, False])
def test_cohort_run_leaves_the_cycle_collector_as_it_was(cohort_store: Path, enabled: bool) -> None:
    rs = rules()
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with Store.open(cohort_store) as s:
            run_cohort(Session(s, rs), load_cohort(COHORT, rs))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_cohort_run_leaves_the_connections_memory_limit_as_it_was(cohort_store: Path) -> None:
    rs = rules()
    with Store.open(cohort_store) as s:
        s.con.execute("SET memory_limit = '5GB'")
        before = s.con.execute("SELECT current_setting('memory_limit')").fetchone()
        run_cohort(Session(s, rs), load_cohort(COHORT, rs))
        assert s.con.execute("SELECT current_setting('memory_limit')").fetchone() == before


def _joints_quiet_rule(directory: Path) -> None:
    """A rule directory with `joints_quiet`: no active joint at the latest joint examination."""
    directory.mkdir()
    write(directory, """id: joints_quiet
version: "1"
description: no active joint at the latest joint examination (test)
citation: test
define: {not: {rule: arthritis}}
""", "joints_quiet.yaml")  # fmt: skip


def _quiet_report(
    tmp_path: Path, rows: list[dict[str, object]], window: str, sustained: bool = False
) -> Report:
    """The report of `joints_quiet`'s time to event within ``window`` from the first anakinra
    start, over a store of ``rows``."""
    from tests.cohort_support import RULES
    from timeline.language.loader import load_rules

    _joints_quiet_rule(tmp_path / "rules")
    with Store.create(tmp_path / "s.duckdb") as s:
        append_rows(s, rows, author="t", source="test")
    flag = ", sustained: true" if sustained else ""
    cohort = write(tmp_path, f"""cohort: quiet
version: "1"
index: {{first: {{kind: medication_start, drug: anakinra}}}}
drug: anakinra
time_to_event: [{{id: quiet, rule: joints_quiet, window: {window}{flag}}}]
adverse_events: false
""")  # fmt: skip
    return run(tmp_path / "s.duckdb", cohort, load_rules([RULES, tmp_path / "rules"]))


def test_a_patient_censored_the_day_before_another_reaches_the_outcome_is_not_at_risk_then(
    tmp_path: Path,
) -> None:
    """Helper 40: A stops anakinra on day 30 (censored through that day), B's joints are quiet
    on day 31, C's on day 60: two at risk at B's event, S = 1/2 from day 31 to C's event on day
    60, and the median is the middle of that stretch."""
    rows = [
        {"patient_id": p, "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
         "dose": 100, "dose_unit": "mg", "frequency": "daily"} for p in "ABC"
    ] + [{"patient_id": p, "kind": "joint_exam", "occurred_at": "2020-01-15", "active_joints": 3} for p in "ABC"] + [
        {"patient_id": "A", "kind": "discontinuation", "occurred_at": "2020-02-14", "drug": "anakinra", "reason": "intolerance"},
        {"patient_id": "B", "kind": "joint_exam", "occurred_at": "2020-02-15", "active_joints": 0},
        {"patient_id": "C", "kind": "joint_exam", "occurred_at": "2020-03-15", "active_joints": 0},
    ]  # fmt: skip
    report = _quiet_report(tmp_path, rows, "90 days")
    event = next(st for st in report.curves[("quiet", "all")].steps if st.events)
    assert (event.time, event.at_risk, event.survival) == (31.0, 2, 0.5)
    assert report.cell("tte.quiet").stats["km_median_days"] == 45.5


def _relapsing(tmp_path: Path, sustained: bool) -> Report:
    """Joints quiet 15 Feb, active again 1 Mar, quiet for good 15 Mar (A); quiet 15 Feb and
    active again 1 Apr, its last record (B)."""
    exams = {
        "A": [("2020-02-15", 0), ("2020-03-01", 2), ("2020-03-15", 0)],
        "B": [("2020-02-15", 0), ("2020-04-01", 1)],
    }
    rows = [
        {"patient_id": p, "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
         "dose": 100, "dose_unit": "mg", "frequency": "daily"} for p in "AB"
    ] + [{"patient_id": p, "kind": "joint_exam", "occurred_at": "2020-01-15", "active_joints": 3} for p in "AB"] + [
        {"patient_id": p, "kind": "joint_exam", "occurred_at": at, "active_joints": n} for p, seen in exams.items() for at, n in seen
    ]  # fmt: skip
    return _quiet_report(tmp_path, rows, "90 days", sustained)


def test_time_to_event_is_the_first_instant_the_rule_holds_even_if_it_relapses(tmp_path: Path) -> None:
    report = _relapsing(tmp_path, sustained=False)
    assert {p: (t.event, t.days) for p, t in ((p, report.patients[p].tte["quiet"]) for p in "AB")} == {
        "A": (True, 31.0),
        "B": (True, 31.0),
    }


def test_a_sustained_time_to_event_is_the_first_instant_it_holds_to_the_window_end(tmp_path: Path) -> None:
    """Helper 46: 'resolved within 3 months' counted a fever-free week that a new fever ended,
    where the state at 3 months (and the ground truth's resolution date) did not."""
    report = _relapsing(tmp_path, sustained=True)
    a, b = report.patients["A"].tte["quiet"], report.patients["B"].tte["quiet"]
    assert ((a.event, a.days), (b.event, b.censored_by)) == ((True, 60.0), (False, "end_of_follow_up"))


def test_a_sustained_spell_is_not_ended_by_a_moment_nothing_is_known(tmp_path: Path) -> None:
    """Helper 49: a state unknown between visits ended the spell, so the Valencia resolutions
    were dated at the last visit before 3 months. Quiet at a November exam (valid 90 days: the
    index falls in it), unknown from 14 February, quiet again on 15 March: the spell began at
    the index."""
    rows = [
        {"patient_id": "C", "kind": "joint_exam", "occurred_at": "2019-11-15", "active_joints": 0},
        {"patient_id": "C", "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
         "dose": 100, "dose_unit": "mg", "frequency": "daily"},
        {"patient_id": "C", "kind": "joint_exam", "occurred_at": "2020-03-15", "active_joints": 0},
    ]  # fmt: skip
    report = _quiet_report(tmp_path, rows, "90 days", sustained=True)
    c = report.patients["C"].tte["quiet"]
    assert (c.event, c.days) == (True, 0.0)


@pytest.fixture
def spelt_two_ways(tmp_path: Path) -> Report:
    """Three patients on anakinra with an injection-site reaction and a discontinuation for
    inefficacy, one of them written 'Injection-site reaction' and 'Inefficacy'."""
    rows: list[dict[str, object]] = []
    for p, term, reason in (("A", "Injection-site reaction", "Inefficacy"), ("B", "injection site reaction", "inefficacy"),
                            ("C", "injection site reaction", "inefficacy")):  # fmt: skip
        rows += [
            {"patient_id": p, "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
             "dose": 100, "dose_unit": "mg", "frequency": "daily"},
            {"patient_id": p, "kind": "adverse_event", "occurred_at": "2020-02-01", "drug": "anakinra", "term": term,
             "grade": 1},
            {"patient_id": p, "kind": "discontinuation", "occurred_at": "2020-03-01", "drug": "anakinra",
             "reason": reason},
        ]  # fmt: skip
    with Store.create(tmp_path / "s.duckdb") as s:
        append_rows(s, rows, author="t", source="test")
    cohort = write(
        tmp_path,
        'cohort: c\nversion: "1"\nindex: {first: {kind: medication_start, drug: anakinra}}\ndrug: anakinra\n',
    )
    return run(tmp_path / "s.duckdb", cohort)


def test_one_patients_explanation_labels_a_row_as_the_whole_report_does(
    spelt_two_ways: Report, tmp_path: Path
) -> None:
    """Helper 42: explaining A alone, who wrote 'Inefficacy', labelled the row by A's spelling."""
    from timeline.cohort.explain import explain_patient

    rs = rules()
    with Store.open(tmp_path / "s.duckdb") as s:
        out = explain_patient(
            Session(s, rs), load_cohort(tmp_path / "cohort.yaml", rs), "A", "discontinuation.inefficacy"
        )
    assert (out["cell"]["label"], out["follow_up"]["discontinuation_reason"]) == (
        "discontinued: inefficacy",
        "inefficacy",
    )


def test_terms_written_two_ways_with_one_cell_id_are_one_row_under_the_common_spelling(
    spelt_two_ways: Report,
) -> None:
    """Helper 40: two rows shared the id ae.injection_site_reaction.any_grade (1/3 and 2/3)."""
    ids = [c.id for c in spelt_two_ways.cells]
    assert len(ids) == len(set(ids))
    cell = spelt_two_ways.cell("ae.injection_site_reaction.any_grade")
    assert (cell.n, cell.N, cell.label) == (3, 3, "injection site reaction, any grade")


def test_discontinuation_reasons_differing_in_case_are_one_row(spelt_two_ways: Report) -> None:
    cell = spelt_two_ways.cell("discontinuation.inefficacy")
    assert (cell.n, cell.N, cell.label) == (3, 3, "discontinued: inefficacy")


def _died_after_an_exam(tmp_path: Path, follow_up: str = "") -> Report:
    """D: anakinra from 15 January 2020, 2 active joints on 20 April, died 1 May: the exam is
    valid for 90 days, to 19 July, past the 6-month time point (15 July)."""
    rows = [
        {"patient_id": "D", "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
         "dose": 100, "dose_unit": "mg", "frequency": "daily"},
        {"patient_id": "D", "kind": "joint_exam", "occurred_at": "2020-04-20", "active_joints": 2},
        {"patient_id": "D", "kind": "death", "occurred_at": "2020-05-01"},
    ]  # fmt: skip
    with Store.create(tmp_path / "s.duckdb") as s:
        append_rows(s, rows, author="t", source="test")
    cohort = write(tmp_path, f"""cohort: died
version: "1"
index: {{first: {{kind: medication_start, drug: anakinra}}}}
drug: anakinra
{follow_up}time_points: [6 months]
outcomes: [{{id: arthritis_all, rule: arthritis, denominator: all}}, {{id: arthritis_followed, rule: arthritis, denominator: followed}}]
adverse_events: false
""")  # fmt: skip
    return run(tmp_path / "s.duckdb", cohort)


def test_under_all_a_patient_who_died_before_a_time_point_is_unknown_there(tmp_path: Path) -> None:
    """Helper 49: a child who died counted with active arthritis at 6 months, from an exam
    still valid after the death."""
    report = _died_after_an_exam(tmp_path)
    assert nN(report, "outcome.arthritis_all.6_months") == (0, 1, 1)
    value = report.patients["D"].values[("arthritis", "6_months")]
    assert value.why == "after the patient's death on 2020-05-01"


def test_a_follow_up_not_ended_by_death_still_reads_nothing_after_it(tmp_path: Path) -> None:
    report = _died_after_an_exam(tmp_path, "follow_up: {end: [end_of_follow_up], otherwise: open}\n")
    assert nN(report, "outcome.arthritis_followed.6_months") == (0, 1, 1)
    assert (
        report.patients["D"].values[("arthritis", "6_months")].why
        == "after the patient's death on 2020-05-01"
    )


def test_a_follow_up_not_ended_by_death_is_warned_of(tmp_path: Path) -> None:
    report = _died_after_an_exam(tmp_path, "follow_up: {end: [end_of_follow_up], otherwise: open}\n")
    assert any(w.startswith("follow_up.end does not list death") for w in report.warnings)


def test_km_by_the_window_end_reads_each_patients_own_window(tmp_path: Path) -> None:
    """Helper 49: 3 calendar months are 89-92 days; read at the longest window, the censorings
    at the end of shorter ones left fewer at risk for a later event (Valencia: 85.9% where
    81.8% were seen to reach it and no one was lost)."""
    # X's window (from 31 May) is 92 days, reached on its last; Y's (from 31 January) 89, not
    # reached; Z and W reach it on day 10: read at day 92 Y was no longer at risk, 100%
    starts = {"X": "2021-05-31", "Y": "2022-01-31", "Z": "2021-05-31", "W": "2022-01-31"}
    quiet = {"X": "2021-08-31", "Y": None, "Z": "2021-06-10", "W": "2022-02-10"}
    rows: list[dict[str, object]] = []
    for p, day in starts.items():
        rows += [
            {"patient_id": p, "kind": "medication_start", "occurred_at": day, "drug": "anakinra",
             "dose": 100, "dose_unit": "mg", "frequency": "daily"},
            {"patient_id": p, "kind": "joint_exam", "occurred_at": day, "active_joints": 3},
        ]  # fmt: skip
        if quiet[p]:
            rows.append({"patient_id": p, "kind": "joint_exam", "occurred_at": quiet[p], "active_joints": 0})
        rows.append({"patient_id": p, "kind": "end_of_follow_up", "occurred_at": "2023-01-01"})
    report = _quiet_report(tmp_path, rows, "3 months")
    c = report.cell("tte.quiet")
    assert (c.n, c.N) == (3, 4)
    assert c.stats["km_reached_by_window_end"] == pytest.approx(0.75)


def test_an_open_follow_up_report_is_reproduced_as_known_at_the_moment_its_manifest_records(
    cohort_store: Path, tmp_path: Path
) -> None:
    """Helper 49: a run as known now recorded as_known_at null, and seq:N of its high-water
    ended open follow-up at that batch's moment: another follow-up."""
    text = COHORT.read_text(encoding="utf-8").replace(
        "end: [end_of_follow_up, death]", "end: [death]\n  otherwise: open"
    )
    cohort = write(tmp_path, text)
    rs = rules()
    spec = load_cohort(cohort, rs)
    with Store.open(cohort_store) as s:
        now = run_cohort(Session(s, rs), spec)
        moment = datetime.fromisoformat(now.manifest["cohort"]["open_follow_up_as_known_at"])
        again = run_cohort(Session(s, rs, as_known_at=moment.replace(tzinfo=None)), spec)
    assert [c.to_json() for c in again.cells] == [c.to_json() for c in now.cells]


def test_an_adverse_event_table_without_adverse_events_says_0_of_n(tmp_path: Path) -> None:
    """Helper 49: with no adverse event the table vanished, as if none had been looked for."""
    rows = [
        {"patient_id": p, "kind": "medication_start", "occurred_at": "2020-01-15", "drug": "anakinra",
         "dose": 100, "dose_unit": "mg", "frequency": "daily"}
        for p in "AB"
    ]  # fmt: skip
    with Store.create(tmp_path / "s.duckdb") as s:
        append_rows(s, rows, author="t", source="test")
    cohort = write(
        tmp_path, 'cohort: c\nversion: "1"\nindex: {first: {kind: medication_start, drug: anakinra}}\n'
    )
    report = run(tmp_path / "s.duckdb", cohort)
    assert nN(report, "ae.any.any_grade") == (0, 2, 0)


def test_a_plotted_time_point_where_every_answer_is_unknown_is_not_drawn_at_0(tmp_path: Path) -> None:
    """Helper 49: it was drawn at 0%, as if none had the outcome."""
    from timeline.plots import cohort_plot

    report = _died_after_an_exam(tmp_path)
    points = cohort_plot(report, tmp_path / "c.png")["points"]
    assert points["arthritis_all [all]"] == [None]


# ---- confidence intervals and incidence rates ------------------------------------------------


def test_the_kaplan_meier_estimate_by_the_window_end_carries_its_log_log_interval(report: Report) -> None:
    """Events at 0, 19 and 45 days of four at risk, then 3, then 2: S = 1/4 at the window end with
    Greenwood's Σ = 1/(4·3) + 1/(3·2) + 1/(2·1); reached = 1 − S, its limits 1 − S's, swapped."""
    import math

    total = 1 / 12 + 1 / 6 + 1 / 2
    power = math.exp(1.959964 * math.sqrt(total) / math.log(4))
    lower_s, upper_s = 0.25**power, 0.25 ** (1 / power)
    st = report.cell("tte.afebrile").stats
    assert st["km_reached_by_window_end_ci"] == [round(1 - upper_s, 4), round(1 - lower_s, 4)]
    assert (st["ci_level"], st["km_ci"].split(",")[0]) == (0.95, "Greenwood variance")


def test_the_median_interval_is_read_off_the_pointwise_limits(report: Report) -> None:
    """S = 3/4 at 0 days, 1/2 at 19, 1/4 at 45: the lower limit is at or below 1/2 from 0 days
    (its log-log lower limit at 3/4 of 4 is 0.19), the upper only at 45."""
    curve = report.curves[("afebrile", "all")]
    assert report.cell("tte.afebrile").stats["km_median_days_ci"] == list(curve.median_ci()) == [0.0, None]


def test_an_adverse_event_rate_is_per_100_patient_years_of_follow_up(report: Report) -> None:
    """Follow-up from each index day to its last day, both included: P1 517 days, P2 671, P3 62
    (to the day of death), P7 213 — 1463 days; 2 adverse events."""
    st = report.cell("ae.any.any_grade").stats
    years = 1463 / 365.25
    assert (st["exposure"], st["exposure_patient_years"]) == ("follow_up", round(years, 4))
    assert st["per_100_patient_years"] == round(2 / years * 100, 4)
    # Garwood's 95% limits for 2 events: 0.242209 and 7.224688
    assert st["per_100_patient_years_ci"] == pytest.approx(
        [0.242209 / years * 100, 7.224688 / years * 100], abs=1e-3
    )


def test_on_drug_the_adverse_event_exposure_ends_with_the_discontinuation_day(
    cohort_store: Path, tmp_path: Path
) -> None:
    """P2's anakinra was discontinued on 2009-10-15: 229 days from 2009-03-01, not 671; P7's
    interruption (stopped 05-01, restarted 06-01) does not end theirs."""
    text = COHORT.read_text(encoding="utf-8") + "drug: anakinra\nadverse_events: on_drug\n"
    st = run(cohort_store, write(tmp_path, text)).cell("ae.any.any_grade").stats
    assert (st["exposure"], st["exposure_patient_years"]) == (
        "on_drug",
        round((517 + 229 + 62 + 213) / 365.25, 4),
    )


def test_a_discontinuation_rate_is_per_100_patient_years_on_the_drug(
    cohort_store: Path, tmp_path: Path
) -> None:
    text = COHORT.read_text(encoding="utf-8") + "drug: anakinra\n"
    c = run(cohort_store, write(tmp_path, text)).cell("discontinuation.any")
    years = (517 + 229 + 62 + 213) / 365.25
    assert (c.n, c.stats["exposure"], c.stats["exposure_patient_years"]) == (
        1,
        "to_discontinuation",
        round(years, 4),
    )
    assert c.stats["per_100_patient_years"] == round(100 / years, 4)


def test_exposure_ends_at_death_even_when_follow_up_does_not() -> None:
    from datetime import date

    from timeline.cohort.report import PatientFacts, exposure_days

    f = PatientFacts("X", t_index=datetime(2020, 1, 1), fu_end=date(2020, 12, 31), death=date(2020, 1, 10))
    assert exposure_days(f, "follow_up") == 10.0


def test_exposure_starts_at_the_index_instant_not_at_midnight() -> None:
    """An AE earlier on the index day, before the first dose, is not counted: nor is that time."""
    from datetime import date

    from timeline.cohort.report import PatientFacts, exposure_days

    f = PatientFacts("X", t_index=datetime(2020, 1, 1, 18, 0), fu_end=date(2020, 1, 2))
    assert exposure_days(f, "follow_up") == 1.25


def test_the_confidence_level_of_the_file_sets_every_interval(cohort_store: Path, tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8") + "confidence: {level: 0.9}\n"
    wide, narrow = run(cohort_store), run(cohort_store, write(tmp_path, text))
    lo95, hi95 = wide.cell("ae.any.any_grade").stats["per_100_patient_years_ci"]
    lo90, hi90 = narrow.cell("ae.any.any_grade").stats["per_100_patient_years_ci"]
    assert lo95 < lo90 and hi90 < hi95
    assert narrow.cell("tte.afebrile").stats["ci_level"] == 0.9
    assert narrow.to_json()["methods"]["ci_level"] == 0.9


def test_an_outcome_cell_gives_the_reasons_for_its_unknowns_commonest_first(report: Report) -> None:
    c = report.cell("outcome.arthritis_all.6_months")
    assert c.stats["unknown_reasons"] == [
        {"reason": "no joint exam within 90 days (an older one recorded)", "n": 2}
    ]
    assert c.unknown_reason_ids == {"no joint exam within 90 days (an older one recorded)": ["P3", "P7"]}


def test_a_reason_for_unknown_leaves_out_each_patients_own_dates() -> None:
    from timeline.cohort.report import reason_key

    assert reason_key("after the end of follow-up on 2007-06-19 (moved)") == "after the end of follow-up"
    assert reason_key("after the patient's death on 2009-08-01") == "after the patient's death"
    assert (
        reason_key("no CRP within 30 days: the latest, on 2005-01-02, is too old")
        == "no CRP within 30 days (an older one recorded)"
    )
    assert reason_key(None) == "no reason given"


def test_a_time_to_event_cell_has_no_unknown_answers(report: Report) -> None:
    c = report.cell("tte.afebrile")
    assert (c.n, c.N, c.unknown, c.unknown_ids) == (3, 4, 0, [])


def test_a_time_to_event_cell_counts_apart_the_not_reached_with_unknown_moments(report: Report) -> None:
    c = report.cell("tte.afebrile")
    assert (c.not_reached, c.unknown_moment_ids) == (1, ["P3"])
    assert c.text() == (
        "3/4 (75%) reached; 1 not reached, 1 of them with moments the rule was unknown (might have reached it unseen)"
    )


def test_a_time_to_event_cell_says_a_discontinuation_censors_when_its_censor_lists_it(report: Report) -> None:
    assert report.cell("tte.afebrile").stats["discontinuation"]["handling"] == "censored"


def test_a_discontinuation_not_censored_is_followed_when_the_rule_does_not_read_the_drug(
    cohort_store: Path, tmp_path: Path
) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "window: 3 months}", "window: 3 months, censor: [death]}"
    )
    r = run(cohort_store, write(tmp_path, text))
    assert r.cell("tte.afebrile").stats["discontinuation"]["handling"] == "followed"


def test_a_discontinuation_not_censored_is_a_failure_when_the_rule_requires_the_drug(tmp_path: Path) -> None:
    from timeline.cohort.report import discontinuation_handling
    from timeline.language.loader import load_rules

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "afebrile_on_drug.yaml").write_text(
        'id: afebrile_on_drug\nversion: "1"\ndescription: afebrile on anakinra\ncitation: test\n'
        "define:\n  all: [{rule: afebrile_week}, {on_drug: anakinra}]\n",
        encoding="utf-8",
    )
    rs = load_rules([RULES_DIR, rules_dir])
    text = COHORT.read_text(encoding="utf-8").replace(
        "{id: afebrile, rule: afebrile_week, label: Fever resolved, window: 3 months}",
        "{id: afebrile, rule: afebrile_on_drug, label: Fever resolved, window: 3 months, censor: [death]}",
    )
    spec = load_cohort(write(tmp_path, text), rs)
    assert discontinuation_handling(spec, rs, spec.time_to_event[0])["handling"] == "not_reached"


def test_the_report_lists_a_parameter_set_to_another_value_than_its_default(
    cohort_store: Path, tmp_path: Path
) -> None:
    from timeline.language.loader import load_rules

    (tmp_path / "arthritis.yaml").write_text(
        'id: arthritis\nversion: "2"\ndescription: active joints, a parameter of validity\ncitation: test\n'
        "params:\n  validity: {default: 90 days}\n"
        "define:\n  gt: [{latest: {select: {kind: joint_exam}, field: active_joints, within: {param: validity}}}, 0]\n",
        encoding="utf-8",
    )
    rs = load_rules([RULES_DIR, tmp_path], params={"arthritis": {"validity": "60 days"}})
    assert "arthritis.validity = 60 days (default 90 days)" in run(cohort_store, ruleset=rs).changes


def test_a_long_adverse_event_term_is_cut_at_its_first_colon_keeping_the_grade() -> None:
    from cli.cohort import short_labels

    term = "latent tuberculosis infection: positive tuberculin skin test (intradermoreaction 15 mm) after a household contact"
    assert short_labels([f"{term}, grade 2", "varicella, grade 2"]) == [
        "latent tuberculosis infection …, grade 2",
        "varicella, grade 2",
    ]


def test_terms_that_would_be_cut_to_one_label_are_shown_whole() -> None:
    from cli.cohort import short_labels

    a = "infection: severe pneumonia needing intravenous antibiotics and a week in hospital"
    b = "infection: positive tuberculin skin test after a household contact with tuberculosis"
    assert short_labels([a, b]) == [a, b]
