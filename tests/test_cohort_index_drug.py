"""``drug: index``: each patient's study drug is the drug of their own index event, for a study
of "the first IL-1 or IL-6 biologic" whose index names several drugs (docs/cohorts.md).

Worked by hand. Every patient has sJIA, is followed to 2021-01-01, and starts their index drug
on 2020-01-01 (3 months: 2020-04-01; 6 months: 2020-07-01):

- A: anakinra; discontinued 2020-03-01 (inefficacy). AEs 03-01 (the discontinuation day:
  counts) and 04-01 (after: does not). A MAS episode 04-20: off the drug.
- B: canakinumab first; then anakinra 02-01, discontinued 02-15 (adverse event): not B's study
  drug, so neither counts; canakinumab discontinued 04-05 (remission). AEs 03-10 (counts) and
  06-01 (after: does not). A MAS episode 03-15: on the drug (canakinumab).
- C: tocilizumab; stopped 02-10 and restarted 02-20 (an interruption), never discontinued.
  An AE 08-01 (counts).

Joint examinations on 04-10 only (A 3, B 1, C 2 active joints): ``arthritis`` is unknown at 3
months for everyone and known at 6 months (within 90 days). No temperatures: the time to
``afebrile_week`` is never reached, so each patient is censored.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.cohort_support import RULES, counts, rules, write
from tests.support import run_cli
from timeline.cohort.explain import explain_patient
from timeline.cohort.report import Report, ae_title, disc_title, run_cohort
from timeline.cohort.spec import CohortError, load_cohort
from timeline.engine.evaluate import Session
from timeline.errors import UsageError
from timeline.ingest import append_rows
from timeline.store import Store

COHORT = """\
cohort: first_biologic
version: "1"
title: First IL-1 or IL-6 biologic
index:
  first: {kind: medication_start, drug: [anakinra, canakinumab, tocilizumab]}
drug: index
population:
  include: [has_sjia]
follow_up:
  end: [end_of_follow_up, death]
time_points: [3 months, 6 months]
outcomes:
  - {id: arth_on, rule: arthritis, denominator: on_drug}
  - {id: arth_on_w, rule: arthritis, denominator: on_drug, at: [3 months], assessment_window: 30 days}
time_to_event:
  - {id: afebrile, rule: afebrile_week, window: 6 months}
adverse_events: on_drug
discontinuations: true
mas:
  episodes: {select: {kind: mas_episode}}
"""


def _start(eid: str, pid: str, day: str, drug: str) -> dict[str, str]:
    return {"event_id": eid, "patient_id": pid, "kind": "medication_start", "occurred_at": day,
            "drug": drug, "dose": "100", "dose_unit": "mg", "frequency": "daily"}  # fmt: skip


def _common(pid: str) -> list[dict[str, str]]:
    return [
        {"patient_id": pid, "kind": "birth", "occurred_at": "2012-01-01", "sex": "female"},
        {"patient_id": pid, "kind": "diagnosis", "occurred_at": "2019-12-01", "code": "sJIA"},
        {"patient_id": pid, "kind": "end_of_follow_up", "occurred_at": "2021-01-01"},
    ]


def _ae(pid: str, day: str, term: str, grade: int) -> dict[str, str]:
    return {"patient_id": pid, "kind": "adverse_event", "occurred_at": day, "term": term, "grade": str(grade)}


def _exam(pid: str, active: int) -> dict[str, str]:
    return {
        "patient_id": pid,
        "kind": "joint_exam",
        "occurred_at": "2020-04-10",
        "active_joints": str(active),
    }


ROWS = [
    *_common("A"),
    _start("a-ana", "A", "2020-01-01", "anakinra"),
    {"event_id": "a-stop", "patient_id": "A", "kind": "discontinuation", "occurred_at": "2020-03-01",
     "drug": "anakinra", "reason": "inefficacy"},
    _ae("A", "2020-03-01", "rash", 2), _ae("A", "2020-04-01", "otitis media", 1),
    {"patient_id": "A", "kind": "mas_episode", "occurred_at": "2020-04-20", "ended_at": "2020-05-01"},
    _exam("A", 3),
    *_common("B"),
    _start("b-cana", "B", "2020-01-01", "canakinumab"),
    _start("b-ana", "B", "2020-02-01", "anakinra"),
    {"event_id": "b-ana-stop", "patient_id": "B", "kind": "discontinuation", "occurred_at": "2020-02-15",
     "drug": "anakinra", "reason": "adverse event"},
    {"event_id": "b-cana-stop", "patient_id": "B", "kind": "discontinuation", "occurred_at": "2020-04-05",
     "drug": "canakinumab", "reason": "remission"},
    _ae("B", "2020-03-10", "cough", 1), _ae("B", "2020-06-01", "pneumonia", 3),
    {"patient_id": "B", "kind": "mas_episode", "occurred_at": "2020-03-15", "ended_at": "2020-03-25"},
    _exam("B", 1),
    *_common("C"),
    _start("c-toci", "C", "2020-01-01", "tocilizumab"),
    {"patient_id": "C", "kind": "medication_stop", "occurred_at": "2020-02-10", "drug": "tocilizumab"},
    _start("c-toci-again", "C", "2020-02-20", "tocilizumab"),
    _ae("C", "2020-08-01", "headache", 1),
    _exam("C", 2),
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("index-drug") / "s.duckdb"
    with Store.create(path) as s:
        append_rows(s, ROWS, author="index drug tests", source="test")
    return path


def _run(store: Path, text: str) -> Report:
    tmp = store.parent
    rs = rules()
    spec = load_cohort(write(tmp, text, f"c{abs(hash(text))}.yaml"), rs)
    with Store.open(store) as s:
        return run_cohort(Session(s, rs), spec)


@pytest.fixture(scope="module")
def report(store: Path) -> Report:
    return _run(store, COHORT)


@pytest.fixture(scope="module")
def named(store: Path) -> Report:
    """The same file with one named study drug, as before ``drug: index`` existed."""
    return _run(store, COHORT.replace("drug: index", "drug: anakinra"))


def test_drug_index_is_read_as_each_patients_index_drug_not_a_drug_named_index(tmp_path: Path) -> None:
    spec = load_cohort(write(tmp_path, COHORT), rules())
    assert spec.drug_from_index
    # a study drug: discontinuation is among the default causes of censoring
    assert spec.time_to_event[0].censor == ("end_of_follow_up", "death", "discontinuation")


def test_each_patient_follows_the_drug_of_their_own_index_event(report: Report) -> None:
    assert {p: f.drug for p, f in report.patients.items()} == {
        "A": "anakinra",
        "B": "canakinumab",
        "C": "tocilizumab",
    }


def test_a_discontinuation_is_of_the_patients_own_index_drug(report: Report) -> None:
    # B's anakinra discontinuation (02-15) is not B's; C's stop and restart is an interruption
    stops = {p: (f.disc_date, f.disc_reason, f.disc_events) for p, f in report.patients.items()}
    assert stops == {
        "A": (date(2020, 3, 1), "inefficacy", ["a-stop"]),
        "B": (date(2020, 4, 5), "remission", ["b-cana-stop"]),
        "C": (None, None, []),
    }


def test_the_on_drug_denominator_leaves_out_those_off_their_own_index_drug(report: Report) -> None:
    at3, at6 = report.cell("outcome.arth_on.3_months"), report.cell("outcome.arth_on.6_months")
    assert (at3.denominator_ids, at3.left_out_ids) == (["B", "C"], {"index drug discontinued": ["A"]})
    assert (at6.denominator_ids, at6.left_out_ids) == (["C"], {"index drug discontinued": ["A", "B"]})
    assert (at6.n, at6.N, at6.unknown) == (1, 1, 0)


def test_an_assessment_window_on_drug_ends_at_the_patients_own_discontinuation(report: Report) -> None:
    # B's examination (04-10) is after canakinumab's discontinuation (04-05): not taken; C's is
    c = report.cell("outcome.arth_on_w.3_months")
    assert (c.numerator_ids, c.unknown_ids, c.denominator_ids) == (["C"], ["B"], ["B", "C"])
    assert report.patients["C"].assessed == {("arth_on_w", "3_months"): date(2020, 4, 10)}
    assert report.patients["B"].assessed == {}


def test_time_to_event_is_censored_at_the_patients_own_discontinuation(report: Report) -> None:
    censored = {
        p: (f.tte["afebrile"].censored_by, f.tte["afebrile"].days) for p, f in report.patients.items()
    }
    assert censored == {
        "A": ("discontinuation", 61.0),
        "B": ("discontinuation", 96.0),
        "C": ("window", 183.0),
    }
    assert report.cell("tte.afebrile").stats["censored"] == {"discontinuation": 2, "window": 1}


def test_adverse_events_on_drug_run_to_the_patients_own_discontinuation(report: Report) -> None:
    terms = {p: [ae["term"] for ae in f.adverse_events] for p, f in report.patients.items()}
    assert terms == {"A": ["rash"], "B": ["cough"], "C": ["headache"]}
    # the two after each patient's discontinuation are left out, and counted as such
    assert (report.cell("ae.any.any_grade").n, counts(report.cell("ae.any.any_grade").stats)) == (
        3,
        {"events": 3, "not_counted": {"after_discontinuation": 2}},
    )
    for after in ("ae.otitis_media.any_grade", "ae.pneumonia.any_grade"):
        with pytest.raises(UsageError, match="no cell"):
            report.cell(after)


def test_mas_episodes_relate_to_the_patients_own_index_drug(report: Report) -> None:
    assert report.cell("mas.on_drug").numerator_ids == ["B"]  # after B's anakinra stop, on canakinumab
    assert report.cell("mas.off_drug").numerator_ids == ["A"]


def test_the_discontinuation_table_counts_each_patients_own_drug_by_reason(report: Report) -> None:
    any_ = report.cell("discontinuation.any")
    assert (any_.label, any_.numerator_ids, any_.N) == ("index drug discontinued", ["A", "B"], 3)
    assert counts(any_.stats) == {"by_drug": {"anakinra": 1, "canakinumab": 1}}
    assert report.cell("discontinuation.inefficacy").numerator_ids == ["A"]
    assert report.cell("discontinuation.remission").numerator_ids == ["B"]
    with pytest.raises(UsageError, match="no cell"):  # B's anakinra stop
        report.cell("discontinuation.adverse_event")


def test_shared_texts_say_the_index_drug(report: Report) -> None:
    spec = report.spec
    assert disc_title(spec) == "Discontinuations of the index drug (each patient's own)"
    assert ae_title(spec) == (
        "Adverse events (of any drug) while on the index drug (each patient's own): "
        "from the index to its discontinuation"
    )
    assert report.cell("ae.any.any_grade").denominator == (
        "the group (adverse events of any drug, or none named, from the index while on the index drug, "
        "each patient's own: up to its discontinuation, that day included, or the end of follow-up)"
    )
    assert report.policies["on_drug"].startswith(
        "followed (as above) and on the drug: the index drug (each patient's own: the drug of their "
        "index event) not discontinued on or before the time point date"
    )


def test_no_warning_names_a_drug_called_index(report: Report) -> None:
    assert report.warnings == []


def test_a_misspelt_drug_of_the_index_is_still_warned_about(store: Path) -> None:
    text = COHORT.replace("tocilizumab]}", "tocilizumub]}")
    assert _run(store, text).warnings == [
        "the index drug 'tocilizumub' is not recorded for any patient in the store (did you mean 'tocilizumab'?)"
    ]


def test_explain_names_the_patients_own_drug(store: Path, tmp_path: Path) -> None:
    rs = rules()
    spec = load_cohort(write(tmp_path, COHORT), rs)
    with Store.open(store) as s:
        b = explain_patient(Session(s, rs), spec, "B", "outcome.arth_on.3_months")
        c = explain_patient(Session(s, rs), spec, "C", "outcome.arth_on_w.3_months")
    fu = b["follow_up"]
    assert (fu["drug"], fu["discontinued"], fu["discontinuation_events"]) == (
        "canakinumab",
        date(2020, 4, 5),
        ["b-cana-stop"],
    )
    assert b["cell"]["denominator_detail"] == (
        "policy on_drug: follow-up ends 2021-01-01 (end of follow-up): on or after 2020-04-01; "
        "canakinumab (the index drug) stopped 2020-04-05 (remission)"
    )
    assert c["follow_up"]["drug"] == "tocilizumab"
    assert c["cell"]["denominator_detail"].endswith("; tocilizumab (the index drug) never stopped")
    assert c["cell"]["assessment"].endswith(
        "on which arthritis is known, before tocilizumab was discontinued"
    )


def test_cohort_explain_json_and_text_name_the_patients_own_drug(store: Path, tmp_path: Path) -> None:
    path = write(tmp_path, COHORT)
    result = run_cli("cohort", "explain", path, "B", "--json", "--store", store, "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["follow_up"]["drug"] == "canakinumab"
    result = run_cli("cohort", "explain", path, "B", "--store", store, "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    assert "canakinumab stopped 2020-04-05 (remission)" in result.stdout


def test_cohort_run_titles_the_tables_with_the_index_drug(store: Path, tmp_path: Path) -> None:
    result = run_cli("cohort", "run", write(tmp_path, COHORT), "--store", store, "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())  # a long title may wrap
    assert "Discontinuations of the index drug (each patient's own): n/N (%)" in out
    assert "Adverse events (of any drug) while on the index drug (each patient's own)" in out
    assert "not in N: 1 index drug discontinued" in out
    assert "'index'" not in result.stderr


def test_check_refuses_drug_index_when_the_index_names_no_drug(tmp_path: Path) -> None:
    text = COHORT.replace(
        "first: {kind: medication_start, drug: [anakinra, canakinumab, tocilizumab]}",
        "first: {kind: diagnosis, code: sJIA}",
    )
    path = write(tmp_path, text)
    with pytest.raises(CohortError) as info:
        load_cohort(path, rules())
    expected = (
        f"{path}:6:7: drug: index follows the drug of each patient's index event, and the index "
        "selector names no drug: name its drugs (index: {first: {kind: medication_start, drug: "
        "[anakinra, canakinumab]}}), or the study drug (drug: NAME)"
    )
    assert [str(p) for p in info.value.problems] == [expected]
    result = run_cli("cohort", "check", path, "--rules", RULES)
    assert result.exit_code == 8
    assert expected in " ".join(result.stderr.split())


def test_check_refuses_drug_index_when_a_branch_of_the_index_names_no_drug(tmp_path: Path) -> None:
    text = COHORT.replace(
        "first: {kind: medication_start, drug: [anakinra, canakinumab, tocilizumab]}",
        "first: {any_of: [{kind: medication_start, drug: anakinra}, {kind: diagnosis, code: sJIA}]}",
    )
    with pytest.raises(CohortError) as info:
        load_cohort(write(tmp_path, text), rules())
    assert [p.message for p in info.value.problems] == [
        "drug: index follows the drug of each patient's index event, and a branch of the index "
        "selector's any_of names no drug: its patients would have no study drug; name a drug in "
        "every branch"
    ]


def test_a_named_study_drug_behaves_as_before(named: Report) -> None:
    # anakinra for everyone: B's anakinra discontinuation is B's, canakinumab's is not
    assert {p: f.drug for p, f in named.patients.items()} == {
        "A": "anakinra",
        "B": "anakinra",
        "C": "anakinra",
    }
    assert {p: f.disc_date for p, f in named.patients.items()} == {
        "A": date(2020, 3, 1),
        "B": date(2020, 2, 15),
        "C": None,
    }
    at3 = named.cell("outcome.arth_on.3_months")
    assert (at3.denominator_ids, at3.left_out_ids) == (["C"], {"anakinra discontinued": ["A", "B"]})
    assert (named.cell("discontinuation.any").label, counts(named.cell("discontinuation.any").stats)) == (
        "anakinra discontinued",
        {},
    )
    assert disc_title(named.spec) == "Discontinuations of anakinra"
    assert ae_title(named.spec) == (
        "Adverse events (of any drug) while on anakinra: from the index to its discontinuation"
    )
    assert named.policies["on_drug"].startswith(
        "followed (as above) and on the drug: anakinra not discontinued"
    )
    assert named.warnings == []
