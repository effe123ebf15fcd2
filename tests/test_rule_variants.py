"""A rule may read another rule at other values of its parameters (``rule: {id, with}``): the
loader makes a copy of the rule under an id that names the values, checks the values as a
site's would be, and both engines evaluate the copy exactly as the rule evaluates with those
values given as site parameters."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.engine_support import result_difference, store_with, visit_days, write_rule
from tests.support import CliResult, run_cli, valencia_module
from timeline.engine.evaluate import Session
from timeline.language.loader import Problem, RuleError, load_rules
from timeline.language.schema import rule_schema
from timeline.store import Store

# the variants the tests read, each with the site parameters that give its rule the same values
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "crp_strict": ("crp_normal", {"upper": "3 mg/L", "validity": "14 days"}),
    "fever_free_long": ("fever_free", {"window": "14 days", "threshold": "37.5 Cel"}),
    "remission_3_months": ("clinical_remission_on_medication", {"duration": "3 months"}),
    "inactive_without_stiffness": ("inactive_disease", {"require_morning_stiffness": False}),
}


def variant_rules(directory: Path) -> Path:
    for rid, (base, values) in VARIANTS.items():
        write_rule(directory, rid, {"rule": {"id": base, "with": values}})
    return directory


def _crp(patient: str, day: str, mg_per_l: float) -> dict[str, Any]:
    """A native CRP row."""
    return {
        "patient_id": patient,
        "kind": "lab",
        "code": "1988-5",
        "occurred_at": day,
        "value": mg_per_l,
        "unit": "mg/L",
    }


def _crp_store(tmp_path: Path) -> Path:
    """A store at ``tmp_path/s.duckdb`` of one patient, P, with a CRP of 4 mg/L on 1 March 2009."""
    store_with(tmp_path / "s.duckdb", [_crp("P", "2009-03-01", 4)]).close()
    return tmp_path / "s.duckdb"


def _state_of_p(tmp_path: Path, *args: str) -> CliResult:
    """`timeline state P --at 2009-03-02 ARGS…` on the one-CRP store of :func:`_crp_store`."""
    return run_cli("state", "P", "--at", "2009-03-02", "--store", _crp_store(tmp_path), *args)


@pytest.fixture(scope="module")
def valencia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("valencia") / "valencia.duckdb"
    valencia_module("load").load(path)
    yield path


def test_a_variant_gives_the_states_its_rule_gives_with_those_values_as_site_parameters(
    valencia: Path, tmp_path: Path
) -> None:
    rules = load_rules([*_builtin(), variant_rules(tmp_path / "r")])
    problems = []
    with Store.open(valencia) as store:
        points = visit_days(store)
        found = Session(store, rules).evaluate(points, list(VARIANTS))
        for rid, (base, values) in VARIANTS.items():
            reference = Session(store, load_rules(params={base: values})).evaluate(points, [base])
            mine = [r for r in found if r.rule_id == rid]
            assert len(mine) == len(reference) == len(points)
            for a, b in zip(mine, reference, strict=True):
                a.rule_id = b.rule_id
                if problem := result_difference(a, b):
                    problems.append(f"{rid} for {a.patient_id} at {a.q}: {problem}")
    assert not problems, "\n".join(problems[:20])


def test_the_replay_of_one_patient_agrees_with_the_sql_engine_on_variants(
    valencia: Path, tmp_path: Path
) -> None:
    rules = load_rules([*_builtin(), variant_rules(tmp_path / "r")])
    problems = []
    with Store.open(valencia) as store:
        session = Session(store, rules)
        points = visit_days(store)[::3]
        sql = session.evaluate(points, list(VARIANTS))
        assert len(sql) == len(points) * len(VARIANTS)
        for (patient, q), found in zip(
            points, [sql[i : i + len(VARIANTS)] for i in range(0, len(sql), len(VARIANTS))], strict=True
        ):
            for a, b in zip(session.state(patient, q.isoformat(), list(VARIANTS)), found, strict=True):
                b.at = a.at  # the label: the instant as given, either way
                if problem := result_difference(a, b):
                    problems.append(f"{b.rule_id} for {patient} at {q}: {problem}")
    assert not problems, "\n".join(problems[:20])


def test_a_variant_keeps_the_sites_values_of_the_parameters_it_does_not_give(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    (tmp_path / "params.yaml").write_text("crp_normal: {validity: 14 days}\n", encoding="utf-8")
    variant = load_rules([*_builtin(), tmp_path]).rules["crp_normal(upper=3 mg/L)"]
    assert {p.name: str(p.effective) for p in variant.params} == {"upper": "3.0", "validity": "14 days"}


def test_a_variants_value_wins_over_the_sites_value_of_that_parameter(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    rules = load_rules([*_builtin(), tmp_path], params={"crp_normal": {"upper": "10 mg/L"}})
    assert rules.rules["crp_normal(upper=3 mg/L)"].param("upper").effective == 3.0
    assert rules.rules["crp_normal"].param("upper").effective == 10.0


def test_a_value_in_another_unit_is_converted_to_the_parameters_unit(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "0.3 mg/dL"}}})
    rules = load_rules([*_builtin(), tmp_path])
    assert rules.rules["crp_normal(upper=0.3 mg/dL)"].param("upper").effective == pytest.approx(3.0)


def test_two_rules_reading_the_same_values_share_one_variant(tmp_path: Path) -> None:
    for rid in ("a", "b"):
        write_rule(
            tmp_path, rid, {"rule": {"id": "crp_normal", "with": {"validity": "14 days", "upper": "3 mg/L"}}}
        )
    rules = load_rules([*_builtin(), tmp_path])
    assert [r for r in rules.rules if r.startswith("crp_normal(") and "14 days" in r] == [
        "crp_normal(upper=3 mg/L, validity=14 days)"
    ]


def test_a_variant_is_evaluated_before_the_rule_that_reads_it(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    order = load_rules([*_builtin(), tmp_path]).order
    assert order.index("crp_normal(upper=3 mg/L)") < order.index("crp_strict")


def test_variants_are_not_listed_among_the_rules(tmp_path: Path) -> None:
    variant_rules(tmp_path)
    rules = load_rules([*_builtin(), tmp_path])
    assert "crp_normal(upper=3 mg/L, validity=14 days)" in rules.rules
    assert not [r for r in rules.listed() if "(" in r]
    assert len(rules.listed()) == len(rules.rules) - len(VARIANTS) - len(load_rules(_builtin()).rules) + len(
        load_rules(_builtin()).listed()
    )  # the pack's own copies too


def test_state_shows_the_rules_of_the_files_and_not_their_variants(tmp_path: Path) -> None:
    variant_rules(tmp_path / "r")
    _crp_store(tmp_path)
    result = run_cli(
        "state",
        "P",
        "--at",
        "2009-03-02",
        "--rules",
        tmp_path / "r",
        "--store",
        tmp_path / "s.duckdb",
        "--json",
    )
    ids = [s["rule"] for s in json.loads(result.stdout)["states"]]
    assert "crp_strict" in ids
    assert not [r for r in ids if "(" in r]


def test_state_evaluates_a_variant_asked_for_by_its_id(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    _crp_store(tmp_path)
    result = run_cli("state", "P", "--at", "2009-03-02", "--rules", tmp_path / "r", "--store", tmp_path / "s.duckdb",
                     "--rule", "crp_normal(upper=3 mg/L)", "--rule", "crp_normal", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    values = {s["rule"]: s["value"] for s in json.loads(result.stdout)["states"]}
    assert values == {"crp_normal(upper=3 mg/L)": False, "crp_normal": True}


def test_explain_marks_the_values_the_reference_gives_and_names_the_rule_copied(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    _crp_store(tmp_path)
    result = run_cli("explain", "P", "crp_normal(upper=3 mg/L)", "--at", "2009-03-02", "--rules", tmp_path / "r",
                     "--param", "crp_normal.validity=14 days", "--store", tmp_path / "s.duckdb", "--json")  # fmt: skip
    tree = json.loads(result.stdout)["tree"]
    assert tree["variant_of"] == "crp_normal"
    assert tree["parameters"] == {
        "upper": "3 mg/L (as the reference gives it; default 6 mg/L)",
        "validity": "14 days (site override; default 30 days)",
    }


def test_explain_writes_a_parameter_with_the_digits_the_site_gave_it(tmp_path: Path) -> None:
    # as the rule file and the cohort report's header write it: 12 significant digits, where
    # explain's own formatting once kept 6 (6.1234567 mg/L shown as 6.12346, 1234567 as 1.23457e+06)
    _crp_store(tmp_path)
    result = run_cli("explain", "P", "crp_normal", "--at", "2009-03-02", "--param", "crp_normal.upper=6.1234567 mg/L",
                     "--store", tmp_path / "s.duckdb", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (
        json.loads(result.stdout)["tree"]["parameters"]["upper"]
        == "6.1234567 mg/L (site override; default 6 mg/L)"
    )


def test_explain_of_the_reading_rule_shows_the_variants_derivation_under_its_id(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    _crp_store(tmp_path)
    result = run_cli("explain", "P", "crp_strict", "--at", "2009-03-02", "--rules", tmp_path / "r", "--store", tmp_path / "s.duckdb")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "crp_normal(upper=3 mg/L)@1 = false" in result.stdout


def test_rule_examples_can_read_a_variant(tmp_path: Path) -> None:
    write_rule(
        tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}},
        examples=[{"name": "3 mg/L is normal, 3.5 is not",
                   "events": [_crp("X", "2009-03-01", 3), _crp("X", "2009-03-02", 3.5)],
                   "expect": [{"at": "2009-03-01", "value": True}, {"at": "2009-03-02", "value": False}]}],
    )  # fmt: skip
    result = run_cli("rules", "test", tmp_path, "--rule", "crp_strict")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout


def test_the_json_schema_accepts_a_rule_read_at_other_values(tmp_path: Path) -> None:
    path = write_rule(
        tmp_path,
        "crp_strict",
        {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L", "validity": "14 days"}}},
    )
    jsonschema.Draft202012Validator(rule_schema()).validate(yaml.safe_load(path.read_text(encoding="utf-8")))


# ---- problems, each at its line --------------------------------------------------------------


def _problems(directory: Path) -> list[Problem]:
    with pytest.raises(RuleError) as caught:
        load_rules([*_builtin(), directory])
    return caught.value.problems


@pytest.mark.parametrize(
    ("define", "line", "message"),
    [
        ("rule: {id: crp_normal, with: {uper: 3 mg/L}}", 6, "rule 'crp_normal' has no parameter 'uper' (did you mean 'upper'?)"),
        ("rule: {id: crp_normal, with: {upper: 3 days}}", 6, "crp_normal.upper: '3 days' is not the same kind of value as the default, 6 mg/L"),
        ("rule: {id: crp_normal, with: {upper: 3 kg}}", 6, "crp_normal.upper: cannot convert 'kg' to 'mg/L' (different dimensions)"),
        ("rule: {id: crp_normal, with: {validity: -3 days}}", 6,
         "crp_normal.validity: -3 days cannot be its value: it is normal's within (crp_normal.yaml:14), a length, which cannot be negative"),
        ("rule: {id: crp_normal, with: {upper: 3 abc}}", 6, "upper: '3 abc': 'abc' is not a UCUM unit"),
        ("rule: {id: crp_normal, with: {upper: abc}}", 6, "crp_normal.upper: 'abc' is not a number, a quantity ('6 mg/L'), a duration ('30 days') or true/false"),
        ("rule: {id: crp_normal, with: {upper: [3]}}", 6,
         "upper: a value is a number, a quantity ('5 mg/L'), a duration ('30 days'), true/false, a drug's name or {param: NAME}, a parameter of this rule"),
        ("rule: {id: crp_nrmal, with: {upper: 3 mg/L}}", 6, "unknown rule 'crp_nrmal' (did you mean 'crp_normal'?)"),
        ("rule: {id: crp_normal}", 6,
         "{id: crp_normal} without with: for the rule as it is, write crp_normal alone; at other values of its parameters, give them: {id: RULE, with: {PARAMETER: VALUE}}"),
        ("rule: {id: crp_normal, with: {}}", 6, "rule's with maps parameters of the rule to their values here, e.g. {upper: 5 mg/L}"),
        ("rule: {id: crp_normal, wth: {upper: 3 mg/L}}", 6, "unknown key 'wth' for rule (did you mean 'with'?)"),
        ("rule: {with: {upper: 3 mg/L}}", 6, "rule takes a rule id, or {id: RULE, with: {PARAMETER: VALUE}}"),
        ("rule: {id: 5, with: {upper: 3 mg/L}}", 6, "rule's id must be a rule id, not 5"),
    ],
    ids=["unknown-parameter", "other-kind", "unit", "negative-length", "not-a-unit", "not-a-value", "a-list", "unknown-rule",
         "no-with", "empty-with", "unknown-key", "no-id", "id-not-text"],
)  # fmt: skip
def test_a_wrong_variant_is_reported_at_its_line(
    tmp_path: Path, define: str, line: int, message: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"id: r\nversion: '1'\ndescription: d\ncitation: c\ndefine:\n  {define}\n", encoding="utf-8"
    )
    found = [p for p in _problems(tmp_path) if p.file == str(path)]
    assert [(p.line, p.message) for p in found] == [(line, message)]


def test_two_wrong_values_of_one_with_are_reported_together(tmp_path: Path) -> None:
    """Helper 43: the second was reported only once the first was mended."""
    write_rule(tmp_path, "r", {"rule": {"id": "crp_normal", "with": {"upper": [3], "validity": None}}})
    assert [p.message.split(":")[0] for p in _problems(tmp_path)] == ["upper", "validity"]


def test_a_wrong_value_is_reported_in_every_file_that_gives_it(tmp_path: Path) -> None:
    for rid in ("a", "b"):
        write_rule(tmp_path, rid, {"rule": {"id": "crp_normal", "with": {"upper": "3 kg"}}})
    assert sorted(Path(p.file).name for p in _problems(tmp_path)) == ["a.yaml", "b.yaml"]


def test_a_rule_reading_itself_at_other_values_is_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        id: r
        version: '1'
        description: d
        citation: c
        params:
          limit: {default: 3}
        define:
          any: [{rule: {id: r, with: {limit: 4}}}, {gt: [{param: limit}, 1]}]
        """), encoding="utf-8")  # fmt: skip
    assert [p.message for p in _problems(tmp_path)] == ["rules form a cycle: r(limit=4) → r(limit=4)"]


def test_a_problem_in_the_rule_read_is_not_reported_again_for_its_variant(tmp_path: Path) -> None:
    write_rule(tmp_path, "base", {"all": [{"gt": [{"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}, "2 kg"]},
                                          {"gt": [{"param": "limit"}, 1]}]},
               params={"limit": {"default": 3}})  # fmt: skip
    write_rule(tmp_path, "reader", {"rule": {"id": "base", "with": {"limit": 4}}})
    found = _problems(tmp_path)
    assert len(found) == 1, [str(p) for p in found]
    assert found[0].file.endswith("base.yaml")


def _builtin() -> list[Path]:
    from timeline.language.loader import BUILTIN_DIR

    return [BUILTIN_DIR]


def test_the_shipped_sensitivity_rule_reads_crp_at_6_mg_per_l_where_the_site_reads_10() -> None:
    rules = load_rules([*_builtin(), Path("examples/site_rules")])
    assert rules.rules["crp_normal"].param("upper").effective == 10.0  # the site's params.yaml
    copy = "crp_normal(upper=crp_normal_anajis.upper)"
    assert rules.rules[copy].param("upper").effective == 6.0
    assert rules.dependencies("crp_normal_anajis") == [copy, "crp_normal_anajis"]


# ---- cohort files ----------------------------------------------------------------------------


def _cohort(path: Path, rule: Any, **item: Any) -> Path:
    """The Valencia cohort file with one outcome, reading ``rule``, at every time point."""
    spec = yaml.safe_load(Path("examples/valencia/cohort.yaml").read_text(encoding="utf-8"))
    spec.pop("time_to_event", None)
    spec["outcomes"] = [{**item, "rule": rule, "denominator": "all"}]
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _outcome_cells(*args: Any) -> dict[str, tuple[list[str], list[str], list[str]]]:
    result = run_cli("cohort", "run", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return {
        c["column"] + " " + c["group"]: (c["numerator_ids"], c["denominator_ids"], c["unknown_ids"])
        for c in json.loads(result.stdout)["cells"]
        if c["section"] == "outcome"
    }


def test_a_cohort_outcome_reads_a_rule_at_other_values_as_the_rule_with_those_site_parameters(
    valencia: Path, tmp_path: Path
) -> None:
    variant = _cohort(tmp_path / "v.yaml", {"id": "crp_normal", "with": {"upper": "2 mg/L"}}, id="crp")
    plain = _cohort(tmp_path / "p.yaml", "crp_normal", id="crp")
    mine = _outcome_cells(variant, "--store", valencia)
    assert mine == _outcome_cells(plain, "--store", valencia, "--param", "crp_normal.upper=2 mg/L")
    assert mine != _outcome_cells(plain, "--store", valencia)  # the value changes the answer here


def test_a_cohort_item_reading_a_rule_at_other_values_names_its_own_id(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.yaml", {"id": "crp_normal", "with": {"upper": "2 mg/L"}})
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    assert (
        "outcome id needed: the rule is read at other parameter values (crp_normal(upper=2 mg/L)); name the item"
        in result.stderr
    )


def test_a_wrong_value_in_a_cohort_file_is_reported_at_its_line(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.yaml", {"id": "crp_normal", "with": {"uper": "2 mg/L"}}, id="crp")
    line = next(
        i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "uper" in text
    )
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    assert f"{path}:{line}:" in result.stderr
    assert "rule 'crp_normal' has no parameter 'uper' (did you mean 'upper'?)" in result.stderr


# ---- what an audit found (helper 32) ---------------------------------------------------------


def test_a_copy_read_at_other_values_again_is_refused_at_its_line(tmp_path: Path) -> None:
    write_rule(tmp_path, "a", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    path = write_rule(
        tmp_path, "b", {"rule": {"id": "crp_normal(upper=3 mg/L)", "with": {"validity": "1 day"}}}
    )
    line = next(
        i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "upper=3" in text
    )
    found = _problems(tmp_path)
    assert [(p.file, p.line) for p in found] == [(str(path), line)]
    assert found[0].message.startswith(
        "rule's id must be the id of a rule file, not 'crp_normal(upper=3 mg/L)'"
    )


def test_a_cohort_file_cannot_read_a_copy_at_other_values_again(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "a", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    path = _cohort(
        tmp_path / "c.yaml", {"id": "crp_normal(upper=3 mg/L)", "with": {"validity": "1 day"}}, id="crp"
    )
    result = run_cli("cohort", "check", path, "--rules", tmp_path / "r")
    assert result.exit_code == 8
    assert "rule's id must be the id of a rule file, not 'crp_normal(upper=3 mg/L)'" in result.stderr


def test_a_file_overridden_by_a_later_directory_asks_for_no_copies(tmp_path: Path) -> None:
    for d, name in (("d1", "p"), ("d2", "q")):
        write_rule(tmp_path / d, "foo", {"gt": [{"param": name}, 1]}, params={name: {"default": 3}})
    write_rule(tmp_path / "d1", "x", {"rule": {"id": "foo", "with": {"p": 5}}})
    write_rule(tmp_path / "d2", "x", {"rule": "foo"})
    rules = load_rules([*_builtin(), tmp_path / "d1", tmp_path / "d2"])
    assert not [r for r in rules.rules if r.startswith("foo(")]


def test_history_and_rules_show_print_a_copys_id_with_brackets_as_written(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "ff_us", {"rule": {"id": "fever_free", "with": {"threshold": "100.4 [degF]"}}})
    _crp_store(tmp_path)
    vid = "fever_free(threshold=100.4 [degF])"
    history = run_cli(
        "history", "P", "--rule", vid, "--rules", tmp_path / "r", "--store", tmp_path / "s.duckdb"
    )
    assert history.exit_code == 0, history.stderr
    assert f"{vid} │" in history.stdout
    shown = run_cli("rules", "show", "ff_us", "--rules", tmp_path / "r")
    assert f"uses rules: {vid}" in shown.stdout


def test_rules_show_of_a_copy_says_what_it_copies_and_which_values_it_was_given(tmp_path: Path) -> None:
    write_rule(tmp_path, "ff_us", {"rule": {"id": "fever_free", "with": {"threshold": "100.4 [degF]"}}})
    shown = json.loads(
        run_cli("rules", "show", "fever_free(threshold=100.4 [degF])", "--rules", tmp_path, "--json").stdout
    )
    assert (shown["variant_of"], shown["variant_with"]) == ("fever_free", ["threshold"])


def test_an_example_whose_params_leave_another_rules_copy_unloadable_fails_alone(tmp_path: Path) -> None:
    window = {"start": {"param": "start"}, "end": {"param": "end"}}
    example = {"name": "a narrower window", "params": {"start": "-100 days", "end": "-50 days"},
               "events": [{"patient_id": "X", "kind": "finding", "code": "fever", "occurred_at": "2009-03-01", "present": True}],
               "expect": [{"at": "2009-03-01", "value": False}]}  # fmt: skip
    write_rule(tmp_path, "w", {"exists": {"select": {"kind": "finding", "code": "fever"}, "window": window}},
               params={"start": {"default": "-30 days"}, "end": {"default": "-10 days"}}, examples=[example])  # fmt: skip
    write_rule(tmp_path, "reader", {"rule": {"id": "w", "with": {"start": "-40 days"}}})
    result = run_cli("rules", "test", tmp_path, "--rules", tmp_path, "--json")
    outcome = {r["example"]: r for r in json.loads(result.stdout)["examples"] if r["rule"] == "w@1"}
    assert result.exit_code == 9
    assert outcome["a narrower window"]["passed"] is False
    assert "with the example's params the rules do not load" in outcome["a narrower window"]["failures"][0]


def test_a_unit_given_to_a_plain_number_parameter_is_refused(tmp_path: Path) -> None:
    write_rule(tmp_path, "r", {"rule": {"id": "ms_score_suggests_mas", "with": {"cutoff": "-2 mg/L"}}})
    assert [p.message for p in _problems(tmp_path)] == [
        "ms_score_suggests_mas.cutoff: '-2 mg/L' has a unit; the parameter is a plain number (its default is -2.1)"
    ]


def test_a_boolean_parameter_can_be_set_from_the_command_line() -> None:
    result = run_cli(
        "rules",
        "show",
        "inactive_disease",
        "--param",
        "inactive_disease.require_morning_stiffness=false",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    # as YAML writes it (helper 59: Python's "False" before)
    assert json.loads(result.stdout)["parameters"]["require_morning_stiffness"]["value"] == "false"


def test_rules_test_of_a_copy_says_it_has_no_examples_of_its_own(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"upper": "3 mg/L"}}})
    result = run_cli("rules", "test", tmp_path, "--rule", "crp_normal(upper=3 mg/L)")
    assert "has no examples (a copy of crp_normal at other parameter values)" in result.stderr


# ---- a copy asked for on the command line ---------------------------------------------------


def test_state_makes_a_copy_no_file_reads_when_asked_for_by_its_id(tmp_path: Path) -> None:
    result = _state_of_p(tmp_path, "--rule", "crp_normal(upper=0.3 mg/dL, validity=60 d)", "--json")
    assert result.exit_code == 0, result.stderr
    [state] = json.loads(result.stdout)["states"]
    assert (state["rule"], state["value"]) == ("crp_normal(upper=0.3 mg/dL, validity=60 days)", False)


def test_explain_reads_a_copys_id_however_its_values_are_spelt(tmp_path: Path) -> None:
    store = _crp_store(tmp_path)
    result = run_cli(
        "explain", "P", "crp_normal(upper = 3.0 mg/L)", "--at", "2009-03-02", "--store", store, "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tree"]["rule"] == "crp_normal(upper=3 mg/L)@1"


@pytest.mark.parametrize(
    ("asked", "message"),
    [("crp_normal(uper=3 mg/L)", "rule 'crp_normal(uper=3 mg/L)': rule 'crp_normal' has no parameter 'uper' (did you mean 'upper'?)"),
     ("crp_normal(3 mg/L)", "rule 'crp_normal(3 mg/L)': give each parameter as NAME=VALUE, e.g. crp_normal(upper=3 mg/L)"),
     ("crp_normal(upper=3 kg)", "rule 'crp_normal(upper=3 kg)': crp_normal.upper: cannot convert 'kg' to 'mg/L' (different dimensions)")],
    ids=["unknown-parameter", "no-name", "unit"],
)  # fmt: skip
def test_a_wrong_copy_asked_for_on_the_command_line_is_a_usage_error(
    tmp_path: Path, asked: str, message: str
) -> None:
    result = _state_of_p(tmp_path, "--rule", asked)
    assert (result.exit_code, result.stderr.strip()) == (2, f"error: {message}")


def test_rules_test_of_an_unknown_rule_is_a_usage_error_with_a_did_you_mean() -> None:
    result = run_cli("rules", "test", "--rule", "acr_pedi_5")
    assert (result.exit_code, result.stderr.strip()) == (
        2,
        "error: unknown rule 'acr_pedi_5' (did you mean 'acr_pedi_50'?)",
    )


@pytest.mark.parametrize(
    ("given", "minutes"), [("1 h", 60.0), ("0.25 h", 15.0), ("2 days", 2880.0), ("20 min", 20.0)]
)
def test_a_time_quantity_parameter_takes_hours_and_days(tmp_path: Path, given: str, minutes: float) -> None:
    """inactive_disease.morning_stiffness_max is 15 min; 1 h (a duration's word) and 0.25 h
    (not a whole duration) are quantities of time for it."""
    copy = load_rules(_builtin()).get(f"inactive_disease(morning_stiffness_max={given})")
    assert copy.param("morning_stiffness_max").effective == pytest.approx(minutes)


# ---- a value given by a parameter of the reading rule -------------------------------------------

STRICT = {"rule": {"id": "crp_normal", "with": {"upper": {"param": "limit"}}}}
LIMIT = {"limit": {"default": "3 mg/L", "description": "the stricter limit"}}


def test_a_value_may_be_a_parameter_of_the_reading_rule(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", STRICT, params=LIMIT)
    rules = load_rules([*_builtin(), tmp_path])
    assert rules.rules["crp_normal(upper=crp_strict.limit)"].param("upper").effective == 3.0


def test_a_site_value_of_the_reading_rules_parameter_reaches_the_copy(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", STRICT, params=LIMIT)
    rules = load_rules([*_builtin(), tmp_path], params={"crp_strict": {"limit": "0.2 mg/dL"}})
    assert rules.rules["crp_normal(upper=crp_strict.limit)"].param("upper").effective == pytest.approx(2.0)


def test_an_examples_value_of_the_reading_rules_parameter_reaches_the_copy(tmp_path: Path) -> None:
    crp = _crp("X", "2009-03-01", 3.5)
    examples = [{"name": "3.5 is above 3", "events": [crp], "expect": [{"at": "2009-03-01", "value": False}]},
                {"name": "3.5 is within 4", "params": {"limit": "4 mg/L"}, "events": [crp], "expect": [{"at": "2009-03-01", "value": True}]}]  # fmt: skip
    write_rule(tmp_path, "crp_strict", STRICT, params=LIMIT, examples=examples)
    result = run_cli("rules", "test", tmp_path, "--rule", "crp_strict")
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "2 passed, 0 failed")


def test_an_unknown_parameter_of_the_reading_rule_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write_rule(
        tmp_path,
        "crp_strict",
        {"rule": {"id": "crp_normal", "with": {"upper": {"param": "limt"}}}},
        params=LIMIT,
    )
    [problem] = _problems(tmp_path)
    assert (problem.file, problem.message) == (
        str(path),
        "unknown parameter 'limt' (did you mean 'limit'?) of 'crp_strict'",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [("validity", "crp_normal.validity: '3 mg/L' is not a duration (e.g. '12 hours', '7 days', '2 weeks', '3 months', '1 year'); "
                  "the default is 30 days (the value of crp_strict.limit)"),
     ("uper", "rule 'crp_normal' has no parameter 'uper' (did you mean 'upper'?)")],
    ids=["another-kind-names-whose-value", "unknown-parameter-not-called-a-bad-value"],
)  # fmt: skip
def test_a_reading_rules_parameter_that_does_not_suit_is_reported(
    tmp_path: Path, name: str, message: str
) -> None:
    write_rule(
        tmp_path,
        "crp_strict",
        {"rule": {"id": "crp_normal", "with": {name: {"param": "limit"}}}},
        params=LIMIT,
    )
    assert [p.message for p in _problems(tmp_path)] == [message]


def test_a_cohort_file_gives_values_not_parameters(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.yaml", {"id": "crp_normal", "with": {"upper": {"param": "limit"}}}, id="crp")
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    assert (
        "upper: a value is a number, a quantity ('5 mg/L'), a duration ('30 days'), true/false"
        in result.stderr
    )


def test_a_cohort_file_s_two_wrong_values_of_one_with_are_reported_together(tmp_path: Path) -> None:
    path = _cohort(
        tmp_path / "c.yaml", {"id": "crp_normal", "with": {"upper": [3], "validity": None}}, id="crp"
    )
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    assert "upper: a value is" in result.stderr and "validity: a value is" in result.stderr


def test_a_command_line_copy_s_two_wrong_values_are_reported_together(example_store: Path) -> None:
    result = run_cli(
        "state",
        "P001",
        "--at",
        "2008-01-01",
        "--rule",
        "crp_normal(upper=[3], validity=[30 days])",
        "--store",
        example_store,
    )
    assert result.exit_code == 2
    assert "upper: '[3]'" in result.stderr and "validity: '[30 days]'" in result.stderr


def _strict_rules(tmp_path: Path, **params: dict[str, Any]) -> Any:
    write_rule(tmp_path / "r", "crp_strict", STRICT, params=LIMIT)
    write_rule(tmp_path / "r", "stricter", {"rule": {"id": "crp_strict", "with": {"limit": "1 mg/L"}}})
    return load_rules([*_builtin(), tmp_path / "r"], params=params or None)


def test_a_copy_of_a_rule_reading_a_copy_at_its_own_parameter_passes_its_value_on(tmp_path: Path) -> None:
    rules = _strict_rules(tmp_path)
    copy = rules.rules["crp_strict(limit=1 mg/L)"]
    assert rules.dependencies(copy.id)[0] == "crp_normal(upper=crp_strict(limit=1 mg/L).limit)"
    assert rules.rules["crp_normal(upper=crp_strict(limit=1 mg/L).limit)"].param("upper").effective == 1.0


def test_a_copy_passing_its_value_on_gives_the_states_of_the_rule_with_that_site_value(
    valencia: Path, tmp_path: Path
) -> None:
    rules = _strict_rules(tmp_path)
    reference = load_rules([*_builtin(), tmp_path / "r"], params={"crp_strict": {"limit": "1 mg/L"}})
    with Store.open(valencia) as store:
        points = visit_days(store)[::5]
        mine = Session(store, rules).evaluate(points, ["stricter"])
        want = Session(store, reference).evaluate(points, ["crp_strict"])
        replayed = [Session(store, rules).state(p, q.isoformat(), ["stricter"])[0] for p, q in points[::10]]
    assert [r.value for r in mine] == [r.value for r in want]
    assert [r.value for r in replayed] == [r.value for r in mine[::10]]
    assert {r.value for r in mine} == {True, False, None}


def test_a_copy_asked_for_on_the_command_line_passes_its_value_on(tmp_path: Path) -> None:
    write_rule(tmp_path / "r", "crp_strict", STRICT, params=LIMIT)
    result = run_cli("state", "P", "--at", "2009-03-02", "--store", _crp_store(tmp_path), "--rules", tmp_path / "r",
                     "--rule", "crp_strict", "--rule", "crp_strict(limit=5 mg/L)", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [s["value"] for s in json.loads(result.stdout)["states"]] == [
        False,
        True,
    ]  # CRP 4 mg/L: above 3, within 5


# ---- what a third audit found (helper 34) ----------------------------------------------------


def test_a_parameter_in_a_unit_written_another_way_names_its_ucum_spelling() -> None:
    result = run_cli("rules", "show", "crp_normal", "--param", "crp_normal.upper=3 lb")
    assert result.exit_code == 2
    assert "crp_normal.upper: '3 lb': 'lb' is not a UCUM unit; UCUM writes it '[lb_av]'" in result.stderr


def test_a_parameter_given_twice_in_a_copys_id_is_a_usage_error(tmp_path: Path) -> None:
    result = _state_of_p(tmp_path, "--rule", "crp_normal(upper=3 mg/L, upper=4 mg/L)")
    assert (result.exit_code, result.stderr.strip()) == (
        2,
        "error: rule 'crp_normal(upper=3 mg/L, upper=4 mg/L)': upper is given twice",
    )


def test_a_cohort_file_may_name_a_copy_by_its_id(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.yaml", "crp_normal(upper=0.2 mg/dL)", id="crp")
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 0, result.stderr


def test_rules_show_json_gives_a_converted_value_without_float_noise(tmp_path: Path) -> None:
    shown = json.loads(run_cli("rules", "show", "fever_free(threshold=100.4 [degF])", "--json").stdout)
    assert shown["parameters"]["threshold"]["value"] == "38.0"


def test_a_reading_rules_value_set_by_the_site_says_so_when_it_does_not_suit(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"validity": {"param": "window"}}}},
               params={"window": {"default": "14 days"}})  # fmt: skip
    with pytest.raises(RuleError) as caught:
        load_rules([*_builtin(), tmp_path], params={"crp_strict": {"window": "-1 days"}})
    assert caught.value.problems[0].message.endswith(
        "(the value of crp_strict.window, as params.yaml or --param sets it)"
    )


def test_an_unknown_rule_read_at_other_values_in_a_cohort_file_is_reported_with_a_did_you_mean(
    tmp_path: Path,
) -> None:
    path = _cohort(tmp_path / "c.yaml", {"id": "crp_nrmal", "with": {"upper": "2 mg/L"}}, id="crp")
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    assert "unknown rule 'crp_nrmal' (did you mean 'crp_normal'?)" in result.stderr


def test_a_copy_at_two_values_passes_both_on_to_the_copy_it_reads(tmp_path: Path) -> None:
    both = {
        "rule": {"id": "crp_normal", "with": {"upper": {"param": "limit"}, "validity": {"param": "window"}}}
    }
    write_rule(tmp_path, "crp_strict", both, params={**LIMIT, "window": {"default": "14 days"}})
    rules = load_rules([*_builtin(), tmp_path])
    rules.get("crp_strict(limit=1 mg/L, window=3 days)")
    [inner] = [r for rid, r in rules.rules.items() if rid.startswith("crp_normal(upper=crp_strict(")]
    assert (inner.param("upper").effective, str(inner.param("validity").effective)) == (1.0, "3 days")
    assert dict(inner.variant_with) == {
        "upper": "crp_strict(limit=1 mg/L, window=3 days).limit",
        "validity": "crp_strict(limit=1 mg/L, window=3 days).window",
    }


def test_a_reading_rules_value_from_the_command_line_that_does_not_suit_is_a_usage_error(
    tmp_path: Path,
) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"validity": {"param": "window"}}}},
               params={"window": {"default": "14 days"}})  # fmt: skip
    result = run_cli(
        "rules", "show", "crp_strict", "--rules", tmp_path, "--param", "crp_strict.window=-1 days"
    )
    assert (
        result.exit_code == 2 and "--param: crp_normal.validity: -1 day cannot be its value" in result.stderr
    )


def test_a_reading_rules_value_from_params_yaml_that_does_not_suit_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    write_rule(tmp_path, "crp_strict", {"rule": {"id": "crp_normal", "with": {"validity": {"param": "window"}}}},
               params={"window": {"default": "14 days"}})  # fmt: skip
    (tmp_path / "params.yaml").write_text("# the study's window\ncrp_strict:\n  window: -1 days\n")
    with pytest.raises(RuleError) as caught:
        load_rules([*_builtin(), tmp_path])
    assert (caught.value.problems[0].file, caught.value.problems[0].line) == (
        str(tmp_path / "params.yaml"),
        3,
    )


def test_history_takes_a_copy_asked_for_in_another_spelling(tmp_path: Path) -> None:
    store = _crp_store(tmp_path)
    result = run_cli("history", "P", "--rule", "crp_normal(validity=14 d, upper=3.0 mg/L)", "--store", store)
    assert result.exit_code == 0 and "crp_normal(upper=3 mg/L, validity=14 days)" in result.stdout


def test_a_copy_id_naming_another_rules_parameter_reads_that_parameters_value() -> None:
    # at the pack's defaults the loader made no such copy (complete_response passes anakinra on):
    # the id is read back, complete_response.index_drug standing for its value
    rules = load_rules(_builtin())
    copy = rules.get("escalated_therapy(index_drug=complete_response.index_drug)")
    assert (copy.id, copy.param("index_drug").effective) == (
        "escalated_therapy(index_drug=anakinra)",
        "anakinra",
    )
