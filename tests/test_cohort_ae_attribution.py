"""The adverse-event table limited to the AEs attributed to the study drug (``adverse_events:
{drug: study}``): an AE counts when it names the study drug (each patient's own with ``drug:
index``); those naming another drug or none are left out, and the group's "any" cell says how
many. On the synthetic cohort of tests/fixtures/cohort (see test_cohort_report), with three
more AEs of P2 (anakinra from 2009-03-01, discontinued 2009-10-15): one naming anakinra, one
methotrexate, and the skin reaction of the fixture, which names no drug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cohort_support import COHORT, RULES, build_store, counts, rules, run, write
from tests.support import run_cli
from timeline.cohort.explain import explain_patient
from timeline.cohort.report import Report
from timeline.cohort.spec import CohortError, load_cohort
from timeline.engine.evaluate import Session
from timeline.ingest import append_rows
from timeline.store import Store

MORE_AES = [
    {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-05-01", "term": "neutropenia", "grade": 3,
     "drug": "Anakinra"},
    {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-06-01", "term": "transaminitis", "grade": 2,
     "drug": "methotrexate"},
    {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-11-20", "term": "otitis media", "grade": 2,
     "drug": "anakinra"},
]  # fmt: skip


def report_with(tmp: Path, setting: str) -> Report:
    path = build_store(tmp / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, MORE_AES, author="t", source="test")
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", f"drug: anakinra\nadverse_events: {setting}\nmas:", 1
    )
    return run(path, write(tmp, text))


@pytest.fixture(scope="module")
def attributed(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return report_with(tmp_path_factory.mktemp("ae_study"), "{drug: study}")


@pytest.fixture(scope="module")
def attributed_on_drug(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return report_with(tmp_path_factory.mktemp("ae_study_on_drug"), "{until: on_drug, drug: study}")


def test_an_ae_naming_the_study_drug_is_counted(attributed: Report) -> None:
    assert attributed.cell("ae.neutropenia.grade_3").numerator_ids == ["P2"]


def test_an_ae_naming_another_drug_is_not_counted(attributed: Report) -> None:
    with pytest.raises(Exception, match="no cell"):
        attributed.cell("ae.transaminitis.any_grade")


def test_an_ae_naming_no_drug_is_not_counted(attributed: Report) -> None:
    with pytest.raises(Exception, match="no cell"):
        attributed.cell("ae.skin_reaction.grade_3")


def test_the_any_cell_says_how_many_aes_the_attribution_left_out(attributed: Report) -> None:
    # P1's injection-site reaction and P2's skin reaction name no drug; P2's transaminitis names methotrexate
    assert counts(attributed.cell("ae.any.any_grade").stats) == {
        "events": 2,
        "not_counted": {"another_drug": 1, "no_drug_named": 2},
    }


def test_attributed_aes_after_the_discontinuation_count_to_the_end_of_follow_up(attributed: Report) -> None:
    assert attributed.cell("ae.otitis_media.grade_2").numerator_ids == ["P2"]


def test_attributed_aes_on_drug_stop_at_the_discontinuation(attributed_on_drug: Report) -> None:
    assert [ae["term"] for ae in attributed_on_drug.patients["P2"].adverse_events] == ["neutropenia"]


def test_the_denominator_says_which_aes_are_counted(attributed_on_drug: Report) -> None:
    assert attributed_on_drug.cell("ae.any.any_grade").denominator == (
        "the group (adverse events attributed to anakinra (the AE names it), from the index while on anakinra: "
        "up to its discontinuation, that day included, or the end of follow-up)"
    )


def test_aes_of_any_drug_carry_no_count_of_left_out_aes(tmp_path: Path) -> None:
    report = report_with(tmp_path, "{drug: any}")
    assert counts(report.cell("ae.any.any_grade").stats) == {"events": 5}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "{drug: studdy}",
            "adverse_events.drug must be one of any, study, not 'studdy' (did you mean 'study'?)",
        ),
        (
            "{until: on_drugs}",
            "adverse_events.until must be one of end_of_follow_up, on_drug, not 'on_drugs'",
        ),
        ("{durg: study}", "unknown key 'durg' for adverse_events (did you mean 'drug'?)"),
    ],
    ids=["drug", "until", "key"],
)
def test_a_wrong_adverse_events_mapping_is_named(tmp_path: Path, setting: str, message: str) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", f"drug: anakinra\nadverse_events: {setting}\nmas:", 1
    )
    with pytest.raises(CohortError) as info:
        load_cohort(write(tmp_path, text), rules())
    assert any(message in p.message for p in info.value.problems)


def _all_left_out(tmp: Path) -> tuple[Path, Path]:
    """The fixture store with P2's AEs naming methotrexate only, and a cohort counting those of
    anakinra: no AE is counted."""
    path = build_store(tmp / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, [MORE_AES[1]], author="t", source="test")
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", "drug: anakinra\nadverse_events: {drug: study}\nmas:", 1
    )
    return path, write(tmp, text)


def test_when_no_ae_is_attributed_the_any_cell_still_says_how_many_were_left_out(tmp_path: Path) -> None:
    report = run(*_all_left_out(tmp_path))
    cell = report.cell("ae.any.any_grade")
    assert (cell.n, counts(cell.stats)) == (
        0,
        {"events": 0, "not_counted": {"another_drug": 1, "no_drug_named": 2}},
    )


def test_cohort_explain_of_a_term_left_out_says_why_it_is_not_counted(tmp_path: Path) -> None:
    path, cohort = _all_left_out(tmp_path)
    rs = rules()
    with Store.open(path) as s:
        out = explain_patient(Session(s, rs), load_cohort(cohort, rs), "P2", "ae.transaminitis.any_grade")
    cell = out["cell"]
    assert cell["role"] == "denominator only: its adverse events of this term are naming another drug" and [
        ae["drug"] for ae in cell["not_counted"]
    ] == ["methotrexate"]


def test_cohort_run_prints_what_the_attribution_left_out(tmp_path: Path) -> None:
    path, cohort = _all_left_out(tmp_path)
    result = run_cli("cohort", "run", cohort, "--store", path, "--rules", RULES)
    assert (
        result.exit_code == 0
        and "adverse events not counted: 1 naming another drug, 2 naming no drug"
        in " ".join(result.stdout.split())
    )


def test_on_drug_the_any_cell_counts_the_aes_after_the_discontinuation_too(
    attributed_on_drug: Report,
) -> None:
    assert counts(attributed_on_drug.cell("ae.any.any_grade").stats) == {
        "events": 1,
        "not_counted": {"after_discontinuation": 1, "another_drug": 1, "no_drug_named": 2},
    }


def test_cohort_explain_of_an_ae_after_the_discontinuation_says_so(tmp_path: Path) -> None:
    path = build_store(tmp_path / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, MORE_AES, author="t", source="test")
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", "drug: anakinra\nadverse_events: on_drug\nmas:", 1
    )
    rs = rules()
    with Store.open(path) as s:
        out = explain_patient(
            Session(s, rs), load_cohort(write(tmp_path, text), rs), "P2", "ae.otitis_media.grade_2"
        )
    assert out["cell"]["role"] == (
        "denominator only: its adverse events of this term are after the discontinuation of anakinra (2009-10-15)"
    )


def test_on_drug_an_ae_naming_another_drug_after_the_discontinuation_is_another_drugs(tmp_path: Path) -> None:
    """Helper 40: 'after_discontinuation' is of the study drug's AEs; methotrexate's is another drug's."""
    path = build_store(tmp_path / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, [{"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-11-20", "term": "nausea",
                         "grade": 1, "drug": "methotrexate"}], author="t", source="test")  # fmt: skip
    text = COHORT.read_text(encoding="utf-8").replace(
        "mas:", "drug: anakinra\nadverse_events: {until: on_drug, drug: study}\nmas:", 1
    )
    report = run(path, write(tmp_path, text))
    (left,) = [ae for ae in report.patients["P2"].ae_not_counted if ae["term"] == "nausea"]
    assert left["not_counted"] == "another_drug"


ACTED_AES = [
    {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-05-01", "term": "neutropenia", "grade": 3,
     "drug": "anakinra", "action": "drug_interrupted", "serious": False},
    {"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-10-15", "term": "pneumonia", "grade": 3,
     "drug": "anakinra", "action": "drug_withdrawn", "serious": True},
    {"patient_id": "P1", "kind": "adverse_event", "occurred_at": "2009-04-01", "term": "otitis media", "grade": 2,
     "drug": "anakinra", "action": "none", "serious": False},
]  # fmt: skip


@pytest.fixture(scope="module")
def acted(tmp_path_factory: pytest.TempPathFactory) -> Report:
    tmp = tmp_path_factory.mktemp("ae_action")
    path = build_store(tmp / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, ACTED_AES, author="t", source="test")
    return run(path)


def test_adverse_events_are_counted_by_the_action_taken_patients_and_events(acted: Report) -> None:
    assert [(acted.cell(f"ae_action.{a}").n, acted.cell(f"ae_action.{a}").stats["events"])
            for a in ("drug_withdrawn", "drug_interrupted", "dose_reduced", "none")] == [(1, 1), (1, 1), (0, 0), (1, 1)]  # fmt: skip


def test_adverse_events_recording_no_action_have_a_row_of_their_own(acted: Report) -> None:
    # the fixture's own two AEs (P1's injection-site reaction, P2's skin reaction) record none
    assert acted.cell("ae_action.not_recorded").numerator_ids == ["P1", "P2"]


def test_adverse_events_are_counted_by_seriousness(acted: Report) -> None:
    assert (acted.cell("ae_serious.yes").numerator_ids, acted.cell("ae_serious.no").numerator_ids) == (
        ["P2"],
        ["P1", "P2"],
    )


def test_explain_an_action_row_lists_the_patients_adverse_events_with_that_action(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("ae_action_explain")
    path = build_store(tmp / "s.duckdb")
    with Store.open(path, write=True) as s:
        append_rows(s, ACTED_AES, author="t", source="test")
    rs = rules()
    with Store.open(path) as s:
        out = explain_patient(Session(s, rs), load_cohort(COHORT, rs), "P2", "ae_action.drug_withdrawn")
    assert [ae["term"] for ae in out["cell"]["events"]] == ["pneumonia"]
