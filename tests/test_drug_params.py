"""A drug named by a rule's text parameter (``drug: {param: index_drug}``), ``not_drug``, and a
value every rule with a parameter takes (``all_rules:`` in params.yaml, ``--param NAME=VALUE``):
a canakinumab study sets the pack's index drug once, not by overriding rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from cli.engine import unrecorded_drugs
from tests.engine_support import CheckedSession, result_difference, store_with, visit_days, write_rule
from tests.support import readme_rule_passes, run_cli
from timeline.cohort.report import index_drug_warnings, run_cohort
from timeline.cohort.spec import load_cohort
from timeline.engine.evaluate import Session
from timeline.language.ast import DailyDose, OnDrug, Selector
from timeline.language.loader import RuleError, load_rules, rule_dirs, walk
from timeline.store import Store

INDEX = {"index_drug": {"default": "anakinra", "description": "the study drug"}}
BIRTH = {"kind": "birth", "occurred_at": "2004-01-01", "sex": "female"}


def dose(patient: str, kind: str, drug: str, day: str, **extra: Any) -> dict[str, Any]:
    row = {"patient_id": patient, "kind": kind, "drug": drug, "occurred_at": day, **extra}
    if kind in ("medication_start", "medication_dose_change"):
        row |= {"dose": 120, "dose_unit": "mg", "frequency": "every_4_weeks"}
    return row


# Three patients: one on canakinumab only, one on anakinra then canakinumab (restarted), one on
# anakinra with methotrexate and tocilizumab after it.
EVENTS = [
    {"patient_id": p, **BIRTH} for p in ("A", "B", "C")
] + [
    dose("A", "medication_start", "canakinumab", "2010-01-01"),
    {"patient_id": "A", "kind": "weight", "occurred_at": "2010-01-01", "value": 30, "unit": "kg"},
    dose("A", "medication_start", "tocilizumab", "2010-06-01"),
    dose("B", "medication_start", "anakinra", "2010-01-01"),
    dose("B", "medication_stop", "anakinra", "2010-02-01"),
    dose("B", "medication_start", "canakinumab", "2010-02-01"),
    dose("B", "medication_stop", "canakinumab", "2010-04-01"),
    dose("B", "medication_start", "canakinumab", "2010-05-01"),
    dose("C", "medication_start", "methotrexate", "2009-06-01"),
    dose("C", "medication_start", "anakinra", "2010-01-01"),
    dose("C", "medication_start", "tocilizumab", "2010-03-01"),
]  # fmt: skip

# the same definition twice: naming the drug by a parameter, and by its name
ON_INDEX = {"all": [{"on_drug": "{DRUG}"},
                    {"exists": {"select": {"kind": "medication_start", "drug": "{DRUG}"}, "window": "ever"}}]}  # fmt: skip
ESCALATED = {"exists": {"select": {"kind": "medication_start", "drug": ["methotrexate", "tocilizumab", "canakinumab"],
                                   "not_drug": "{DRUG}"},
                        "window": {"anchor": {"first": {"kind": "medication_start", "drug": "{DRUG}"}},
                                   "start": "0 days", "start_inclusive": False}}}  # fmt: skip
DOSE = {"daily_dose": {"drug": "{DRUG}", "per_kg": False}}


def spelled(define: Any, drug: Any) -> Any:
    """``define`` with every "{DRUG}" replaced by ``drug``."""
    if isinstance(define, dict):
        return {k: spelled(v, drug) for k, v in define.items()}
    if isinstance(define, list):
        return [spelled(v, drug) for v in define]
    return drug if define == "{DRUG}" else define


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return store_with(tmp_path / "s.duckdb", EVENTS)


def rules_dir(tmp_path: Path, define: Any, drug: str) -> Path:
    d = tmp_path / "rules"
    write_rule(d, "by_param", spelled(define, {"param": "index_drug"}), params=INDEX)
    write_rule(d, "by_name", spelled(define, drug))
    return d


@pytest.mark.parametrize("drug", ["anakinra", "canakinumab", "tocilizumab"])
@pytest.mark.parametrize(
    "define", [ON_INDEX, ESCALATED, DOSE], ids=["on_drug+selector", "not_drug+anchor", "daily_dose"]
)
def test_a_drug_named_by_a_parameter_gives_what_the_drug_named_literally_gives_in_both_engines(
    store: Store, tmp_path: Path, define: Any, drug: str
) -> None:
    rules = load_rules([rules_dir(tmp_path, define, drug)], params={"by_param": {"index_drug": drug}})
    session = CheckedSession(store, rules)  # fails unless the replay and the SQL engine agree
    for patient, at in visit_days(store):
        by_param, by_name = session.state(patient, at.isoformat(), ["by_param", "by_name"])
        assert (by_param.value, by_param.why, by_param.evidence) == (
            by_name.value,
            by_name.why,
            by_name.evidence,
        )


def test_the_engines_read_the_drug_the_parameter_names(tmp_path: Path) -> None:
    rules = load_rules(
        [rules_dir(tmp_path, ESCALATED, "x")], params={"by_param": {"index_drug": "Canakinumab"}}
    )
    selectors = [n for n in walk(rules.rules["by_param"].define) if isinstance(n, Selector)]
    assert {(s.drugs, s.not_drugs) for s in selectors} == {
        (("methotrexate", "tocilizumab", "canakinumab"), ("canakinumab",)),
        (("canakinumab",), ()),
    }


def test_on_drug_and_daily_dose_take_the_parameters_value(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    write_rule(d, "both", {"all": [{"on_drug": {"param": "index_drug"}},
                                   {"gt": [{"daily_dose": {"drug": {"param": "index_drug"}, "per_kg": False}}, "0 mg/d"]}]},
               params=INDEX)  # fmt: skip
    nodes = list(walk(load_rules([d]).rules["both"].define))
    assert [n.drugs for n in nodes if isinstance(n, OnDrug)] == [("anakinra",)] and [
        n.drug for n in nodes if isinstance(n, DailyDose)
    ] == ["anakinra"]


def test_an_inline_selector_is_described_by_the_drug_it_names(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    write_rule(d, "r", {"exists": {"select": {"kind": "medication_start", "drug": {"param": "index_drug"}}, "window": "ever"}},
               params=INDEX)  # fmt: skip
    (selector,) = [n for n in walk(load_rules([d], params={"r": {"index_drug": "rilonacept"}}).rules["r"].define)
                   if isinstance(n, Selector)]  # fmt: skip
    assert selector.name == "rilonacept"


def test_not_drug_selects_events_without_a_drug(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "rules"
    write_rule(d, "r", {"exists": {"select": {"kind": "weight", "not_drug": "anakinra"}, "window": "ever"}})
    session = CheckedSession(store, load_rules([d]))
    (result,) = session.state("A", "2010-01-02", ["r"])
    assert result.value is True


def problems(directory: Path, **params: dict[str, Any]) -> list[str]:
    with pytest.raises(RuleError) as info:
        load_rules([directory], params=params or None)
    return [str(p) for p in info.value.problems]


def test_a_text_parameter_no_drug_is_named_by_is_refused_at_its_default(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "r", {"on_drug": "anakinra"}, params={"window": {"default": "thirty days"}})
    (found,) = problems(tmp_path / "r")
    assert "r.yaml:7:14" in found and "'thirty days' is not a number" in found and "a drug's name" in found


def test_a_text_parameter_read_as_a_value_is_refused_where_it_is_read(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "r", {"all": [{"on_drug": {"param": "index_drug"}}, {"gt": [{"param": "index_drug"}, 3]}]},
               params=INDEX)  # fmt: skip
    (found,) = problems(tmp_path / "r")
    assert (
        "parameter 'index_drug' is a drug's name (anakinra), not a value to compare or compute with" in found
    )


def test_a_number_parameter_cannot_name_a_drug(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "r", {"on_drug": {"param": "limit"}}, params={"limit": {"default": "3 mg/L"}})
    (found,) = problems(tmp_path / "r")
    assert "parameter 'limit' is 3 mg/L, not a drug's name" in found


def test_a_site_value_that_is_no_drug_name_is_refused(tmp_path: Path) -> None:
    (found,) = problems(rules_dir(tmp_path, ON_INDEX, "anakinra"), by_param={"index_drug": "3"})
    assert "'3' is not a drug's name" in found


# ---- the pack -----------------------------------------------------------------------------------

PACK_INDEX = (
    "acr_pedi_30", "acr_pedi_50", "acr_pedi_70", "acr_pedi_90",
    "anajis_response", "complete_response", "escalated_therapy", "pedi_change_active_joints", "pedi_change_chaq",
    "pedi_change_crp", "pedi_change_limited_joints", "pedi_change_parent_global", "pedi_change_physician_global",
)  # fmt: skip


def test_the_packs_index_drug_is_anakinra_unless_a_site_says_otherwise() -> None:
    rules = load_rules()
    assert {
        rid for rid in rules.listed() if any(p.name == "index_drug" for p in rules.rules[rid].params)
    } == set(PACK_INDEX) and {rules.rules[rid].param("index_drug").effective for rid in PACK_INDEX} == {
        "anakinra"
    }


def test_all_rules_in_params_yaml_sets_every_rule_with_the_parameter(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/params.yaml").write_text("all_rules: {index_drug: canakinumab}\n")
    rules = load_rules([*rule_dirs(), tmp_path / "site"])
    assert {rules.rules[rid].param("index_drug").effective for rid in PACK_INDEX} == {"canakinumab"}


def test_a_value_for_one_rule_wins_over_all_rules(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/params.yaml").write_text(
        "all_rules: {index_drug: canakinumab}\nescalated_therapy: {index_drug: rilonacept}\n"
    )
    rules = load_rules([*rule_dirs(), tmp_path / "site"])
    assert (rules.rules["escalated_therapy"].param("index_drug").effective,
            rules.rules["pedi_change_crp"].param("index_drug").effective) == ("rilonacept", "canakinumab")  # fmt: skip


def test_all_rules_naming_a_parameter_no_rule_has_is_a_problem_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/params.yaml").write_text("# the study drug\nall_rules:\n  index_drg: canakinumab\n")
    (found,) = [str(p) for p in _load_problems([*rule_dirs(), tmp_path / "site"])]
    assert (
        "params.yaml:3" in found
        and "no rule has a parameter 'index_drg' (did you mean 'index_drug'?)" in found
    )


def _load_problems(dirs: list[Any]) -> list[Any]:
    with pytest.raises(RuleError) as info:
        load_rules(dirs)
    return info.value.problems


def test_a_value_all_rules_cannot_take_is_one_problem_naming_the_rules(tmp_path: Path) -> None:
    (found,) = [str(p) for p in _load_problems_with(params={"all_rules": {"index_drug": "42"}})]
    assert (
        "index_drug (of acr_pedi_30, acr_pedi_50, acr_pedi_70, acr_pedi_90, anajis_response" in found
        and "'42' is not a drug's name" in found
    )


def _load_problems_with(**kw: Any) -> list[Any]:
    with pytest.raises(RuleError) as info:
        load_rules(**kw)
    return info.value.problems


def test_a_rule_cannot_be_called_all_rules(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "all_rules", {"on_drug": "anakinra"})
    (found,) = problems(tmp_path / "r")
    assert "rule id 'all_rules' is reserved" in found


def test_param_without_a_rule_on_the_command_line_sets_every_rule(example_store: Path) -> None:
    res = run_cli("rules", "show", "pedi_change_crp", "--param", "index_drug=canakinumab", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["parameters"]["index_drug"]["value"] == "canakinumab"


def test_param_without_a_name_is_a_usage_error() -> None:
    res = run_cli("rules", "show", "pedi_change_crp", "--param", "=canakinumab")
    assert res.exit_code == 2 and "must be RULE.NAME=VALUE, or NAME=VALUE" in res.stderr


CANAKINUMAB_STUDY = [
    {"patient_id": "K", **BIRTH},
    dose("K", "medication_start", "anakinra", "2009-06-01"),
    dose("K", "medication_stop", "anakinra", "2009-07-01"),
    {"patient_id": "K", "kind": "lab", "code": "1988-5", "occurred_at": "2010-01-01", "value": 80, "unit": "mg/L"},
    dose("K", "medication_start", "canakinumab", "2010-01-01"),
    {"patient_id": "K", "kind": "lab", "code": "1988-5", "occurred_at": "2010-02-01", "value": 20, "unit": "mg/L"},
]  # fmt: skip


@pytest.mark.parametrize("replay", [True, False], ids=["replay", "sql"])
def test_a_canakinumab_study_measures_the_crp_change_from_the_first_canakinumab_dose(
    tmp_path: Path, replay: bool
) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    session = Session(store, load_rules(params={"all_rules": {"index_drug": "canakinumab"}}))
    session.replay = replay
    (result,) = session.state("K", "2010-02-01", ["pedi_change_crp"])
    assert result.value == pytest.approx(-75.0)  # 80 → 20 mg/L; at anakinra's start there was no CRP


@pytest.mark.parametrize(
    "rule", ["pedi_change_crp", "complete_response", "escalated_therapy", "acr_pedi_30", "anajis_response"]
)
def test_a_copy_of_a_pack_rule_at_another_index_drug_equals_the_site_value(tmp_path: Path, rule: str) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    copy_id = f"{rule}(index_drug=canakinumab)"
    site = CheckedSession(store, load_rules(params={"all_rules": {"index_drug": "canakinumab"}}))
    copies = CheckedSession(store, load_rules())
    for patient, at in visit_days(store):
        (want,) = site.state(patient, at.isoformat(), [rule])
        (got,) = copies.state(patient, at.isoformat(), [copies.rules.get(copy_id).id])
        assert result_difference(got, dataclasses.replace(want, rule_id=copy_id)) is None


def test_a_copy_asked_for_on_the_command_line_reads_its_own_drug(tmp_path: Path) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    session = CheckedSession(store, load_rules())
    copy_id = session.rules.get("pedi_change_crp(index_drug=canakinumab)").id
    got = {r.rule_id: r.value for r in session.state("K", "2010-02-01", ["pedi_change_crp", copy_id])}
    assert got == {"pedi_change_crp": None, copy_id: pytest.approx(-75.0)}


def test_the_pack_at_one_index_drug_everywhere_evaluates_no_copies() -> None:
    for params in (None, {"all_rules": {"index_drug": "canakinumab"}}):
        rules = load_rules(params=params)
        # the rules pass index_drug on: at one value, they read each other (the only copies
        # are inactive_disease_carried_forward's, at its carried validities)
        assert [rid for rid in rules.order if "(" in rid and "index_drug" in rid] == []


def test_one_rules_own_index_drug_is_passed_on_to_every_rule_it_reads() -> None:
    rules = load_rules(params={"anajis_response": {"index_drug": "canakinumab"}})
    copies = {
        rid: rules.rules[rid].param("index_drug").effective for rid in rules.order if "index_drug=" in rid
    }
    assert set(copies.values()) == {"canakinumab"} and {rid.split("(")[0] for rid in copies} == {
        "acr_pedi_30", "pedi_change_crp", "pedi_change_physician_global", "pedi_change_parent_global",
        "pedi_change_chaq", "pedi_change_active_joints", "pedi_change_limited_joints",
    }  # fmt: skip


def test_a_rule_may_pass_its_drug_parameter_on_without_naming_a_drug_itself(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "my_cr", {"rule": {"id": "complete_response", "with": {"index_drug": {"param": "study"}}}},
               params={"study": {"default": "canakinumab"}})  # fmt: skip
    rules = load_rules([*rule_dirs(), tmp_path / "r"])
    (copy,) = [rid for rid in rules.order if rid.startswith("complete_response(")]
    assert rules.rules[copy].param("index_drug").effective == "canakinumab"


def test_a_drug_parameter_passed_on_to_a_number_is_refused(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "r", {"rule": {"id": "crp_normal", "with": {"upper": {"param": "study"}}}},
               params={"study": {"default": "canakinumab"}})  # fmt: skip
    found = [str(p) for p in _load_problems([*rule_dirs(), tmp_path / "r"])]
    assert any("crp_normal.upper: 'canakinumab' is not a number" in f for f in found)


def test_a_copy_at_its_rules_own_values_reads_the_rule_itself(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "r", {"rule": {"id": "crp_normal", "with": {"upper": "6 mg/L"}}})
    rules = load_rules([*rule_dirs(), tmp_path / "r"])
    assert [n.rule for n in walk(rules.rules["r"].define) if hasattr(n, "rule")] == ["crp_normal"]
    assert "crp_normal(upper=6 mg/L)" not in rules.rules


def test_a_drug_name_in_a_daily_dose_is_quoted_in_sql(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "r"
    write_rule(d, "dose", spelled(DOSE, {"param": "index_drug"}), params=INDEX)
    session = CheckedSession(store, load_rules([d], params={"dose": {"index_drug": "st john's wort"}}))
    (result,) = session.state("A", "2010-02-01", ["dose"])  # the SQL engine ran, and agreed with the replay
    assert result.note == "no st john's wort recorded: 0 mg/day"


def test_an_empty_list_of_drugs_in_a_selector_is_refused(tmp_path: Path) -> None:
    write_rule(
        tmp_path / "r",
        "r",
        {"exists": {"select": {"kind": "medication_start", "drug": []}, "window": "ever"}},
    )
    (found,) = problems(tmp_path / "r")
    assert "drug names one drug or a list of at least one" in found


def _canakinumab_cohort(tmp_path: Path, drug: str = "canakinumab", index: str = "canakinumab") -> Path:
    path = tmp_path / "cohort.yaml"
    path.write_text(
        f"cohort: cana\nversion: '1'\nindex:\n  first: {{kind: medication_start, drug: {index}}}\n"
        f"drug: {drug}\npopulation:\n  include: [sjia_diagnosis]\ntime_points: [3 months]\n"
        "outcomes:\n  - {id: acr30, rule: acr_pedi_30, label: ACR Pedi 30}\n",
        encoding="utf-8",
    )
    return path


def test_a_cohort_whose_study_drug_is_not_the_rules_index_drug_is_warned(tmp_path: Path) -> None:
    rules = load_rules()
    (warning,) = index_drug_warnings(load_cohort(_canakinumab_cohort(tmp_path), rules), rules)
    assert warning.startswith(
        "the study drug is canakinumab, but acr_pedi_30, pedi_change_active_joints"
    ) and (
        "measure from the first dose of anakinra (their index_drug): set all_rules: {index_drug: canakinumab}"
        in warning
    )


def test_a_cohort_whose_rules_follow_its_study_drug_is_not_warned(tmp_path: Path) -> None:
    rules = load_rules(params={"all_rules": {"index_drug": "canakinumab"}})
    assert index_drug_warnings(load_cohort(_canakinumab_cohort(tmp_path), rules), rules) == []


def test_a_cohort_of_each_patients_own_index_drug_is_warned_that_baselines_follow_one_drug(
    tmp_path: Path,
) -> None:
    rules = load_rules()
    spec = load_cohort(_canakinumab_cohort(tmp_path, "index", "[anakinra, canakinumab]"), rules)
    (warning,) = index_drug_warnings(spec, rules)
    assert (
        "own index drug (anakinra, canakinumab), but the rules measure every patient from the first dose of anakinra"
        in warning
    )


def test_a_command_line_value_for_all_rules_that_a_files_value_for_one_rule_keeps_out_is_noted(
    tmp_path: Path,
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/params.yaml").write_text("complete_response: {index_drug: tocilizumab}\n")
    rules = load_rules([*rule_dirs(), tmp_path / "site"], params={"all_rules": {"index_drug": "abatacept"}})
    assert rules.rules["complete_response"].param("index_drug").effective == "tocilizumab" and any(
        "--param index_drug=abatacept is not given to complete_response (tocilizumab" in n
        for n in rules.notes
    )


def test_a_drug_name_may_start_with_a_digit(tmp_path: Path) -> None:
    rules = load_rules(
        [rules_dir(tmp_path, ON_INDEX, "x")], params={"by_param": {"index_drug": "6-Mercaptopurine"}}
    )
    (on,) = [n for n in walk(rules.rules["by_param"].define) if isinstance(n, OnDrug)]
    assert on.drugs == ("6-mercaptopurine",)


def test_a_sites_override_without_the_index_drug_the_pack_passes_on_is_one_problem_at_the_override(
    tmp_path: Path,
) -> None:
    write_rule(tmp_path / "site", "pedi_change_crp", {"pct_change": {
        "value": {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
        "baseline": {"at_anchor": {"expr": {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
                                   "anchor": {"first": {"kind": "medication_start", "drug": "anakinra"}}}}}}, unit="%")  # fmt: skip
    (found,) = [str(p) for p in _load_problems([*rule_dirs(), tmp_path / "site"])]
    assert f"{tmp_path / 'site' / 'pedi_change_crp.yaml'}:1" in found and (
        "without its parameter 'index_drug', which rules reading it give it" in found
    )


def test_a_copy_the_cohort_asks_for_at_its_own_index_drug_is_not_warned_about(tmp_path: Path) -> None:
    rules = load_rules()
    path = _canakinumab_cohort(tmp_path)
    path.write_text(
        path.read_text().replace("rule: acr_pedi_30,", "rule: 'acr_pedi_30(index_drug=anakinra)',")
    )
    assert index_drug_warnings(load_cohort(path, rules), rules) == []


def test_the_readmes_drug_parameter_example_loads_and_its_examples_pass(tmp_path: Path) -> None:
    result = readme_rule_passes(
        tmp_path, r"\*\*A drug named by a parameter\.\*\*", "on_study_drug_not_escalated"
    )
    assert result.exit_code == 0 and "1 passed, 0 failed" in result.stdout, result.output


def test_a_drug_set_by_a_parameter_that_no_event_records_is_noted(example_store: Path) -> None:
    result = run_cli("state", "P001", "--at", "2008-06-01", "--rule", "pedi_change_crp", "--store", example_store,
                     "--param", "index_drug=anakinara")  # fmt: skip
    assert (
        result.exit_code == 0
        and "'anakinara' (pedi_change_physician_global.index_drug" in result.stderr
        and (
            "is recorded for no patient in the store (did you mean 'anakinra'?)"
            in " ".join(result.stderr.split())
        )
    )


def test_a_misspelt_drug_in_a_site_rule_file_is_noted(tmp_path: Path) -> None:
    """Helper 43: `on_drug: anakinr` gave false for everyone without a word."""
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    write_rule(tmp_path / "site", "on_ana", {"on_drug": "canakinumabb"})
    rules = load_rules([tmp_path / "site"])
    assert unrecorded_drugs(store, rules) == [
        "'canakinumabb' (on_ana) is recorded for no patient in the store (did you mean 'canakinumab'?)"
    ]


def test_a_site_rule_naming_a_drug_no_patient_had_and_none_like_it_adds_no_note(tmp_path: Path) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    write_rule(tmp_path / "site", "on_toci", {"on_drug": "tocilizumab"})
    assert unrecorded_drugs(store, load_rules([tmp_path / "site"])) == []


def test_a_note_on_stderr_is_also_in_the_json_document(example_store: Path) -> None:
    """Helper 44: a script reading only the JSON missed it."""
    result = run_cli("state", "P001", "--at", "2008-06-01", "--rule", "pedi_change_crp", "--store", example_store,
                     "--param", "index_drug=anakinara", "--json")  # fmt: skip
    notes = json.loads(result.stdout)["notes"]
    assert len(notes) == 1 and notes[0].startswith("'anakinara' (pedi_change_")
    assert notes[0].endswith("is recorded for no patient in the store (did you mean 'anakinra'?)")


# the canakinumab study's patient without the canakinumab: a store of anakinra patients only
ANAKINRA_ONLY = [row for row in CANAKINUMAB_STUDY if row.get("drug") != "canakinumab"]


def test_a_drug_parameter_at_a_known_drug_no_event_records_suggests_no_other_drug(tmp_path: Path) -> None:
    """Helper 62: a correctly spelt canakinumab got "did you mean 'anakinra'?"."""
    store = store_with(tmp_path / "k.duckdb", ANAKINRA_ONLY)
    rules = load_rules(params={"all_rules": {"index_drug": "canakinumab"}})
    (text,) = unrecorded_drugs(store, rules)
    assert text.startswith("no event of the store records 'canakinumab' (") and "did you mean" not in text


def test_a_drug_parameter_no_event_records_is_said_only_of_the_rules_read(tmp_path: Path) -> None:
    store = store_with(tmp_path / "k.duckdb", ANAKINRA_ONLY)
    rules = load_rules(params={"all_rules": {"index_drug": "canakinumab"}})
    assert unrecorded_drugs(store, rules, reading={"pedi_change_crp"}) == [
        "no event of the store records 'canakinumab' (pedi_change_crp.index_drug)"
    ]


def test_a_cohort_reading_no_rule_of_a_drug_parameter_adds_no_note_of_it(tmp_path: Path) -> None:
    store = tmp_path / "k.duckdb"
    store_with(store, ANAKINRA_ONLY).close()
    path = _canakinumab_cohort(tmp_path)
    path.write_text(path.read_text().replace("rule: acr_pedi_30", "rule: crp_normal"))
    result = run_cli("cohort", "run", path, "--store", store, "--param", "index_drug=canakinumab")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr, result.stderr


def test_the_index_drug_warning_of_a_known_drug_no_event_records_suggests_no_other_drug(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path / "k.duckdb", ANAKINRA_ONLY)
    rules = load_rules()
    spec = load_cohort(_canakinumab_cohort(tmp_path), rules)
    warnings = run_cohort(Session(store, rules), spec).warnings
    assert [w for w in warnings if "canakinumab" in w and "index drug" in w] == [
        "no event of the store records the index drug 'canakinumab'"
    ]


def test_a_drug_parameter_at_a_recorded_drug_adds_no_note(tmp_path: Path) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    rules = load_rules(params={"all_rules": {"index_drug": "canakinumab"}})
    assert unrecorded_drugs(store, rules) == []


def test_the_index_drug_warning_names_rules_not_their_copies(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site/params.yaml").write_text(
        "all_rules: {index_drug: canakinumab}\ncomplete_response: {index_drug: anakinra}\n"
    )
    rules = load_rules([*rule_dirs(), tmp_path / "site"])
    path = _canakinumab_cohort(tmp_path)
    path.write_text(path.read_text().replace("rule: acr_pedi_30,", "rule: complete_response,"))
    (warning,) = index_drug_warnings(load_cohort(path, rules), rules)
    assert warning.startswith(
        "the study drug is canakinumab, but complete_response, escalated_therapy measure"
    ) and ("a value a params.yaml gives one rule wins over all_rules" in warning)


def test_a_misspelt_study_drug_is_warned_about_once_and_not_echoed_into_advice(tmp_path: Path) -> None:
    store = store_with(tmp_path / "k.duckdb", CANAKINUMAB_STUDY)
    rules = load_rules()
    spec = load_cohort(_canakinumab_cohort(tmp_path, drug="canakinumb"), rules)
    warnings = run_cohort(Session(store, rules), spec).warnings
    assert [w for w in warnings if "canakinumb" in w] == [
        "the study drug 'canakinumb' is not recorded for any patient in the store (did you mean 'canakinumab'?)"
    ]


def test_an_outcome_reading_a_copy_without_a_label_is_labelled_by_its_own_id(tmp_path: Path) -> None:
    rules = load_rules()
    path = _canakinumab_cohort(tmp_path)
    path.write_text(
        path.read_text().replace(
            "rule: acr_pedi_30, label: ACR Pedi 30}", "rule: 'acr_pedi_30(index_drug=canakinumab)'}"
        )
    )
    (outcome,) = load_cohort(path, rules).outcomes
    assert (outcome.rule, outcome.label) == ("acr_pedi_30(index_drug=canakinumab)", "acr30")
