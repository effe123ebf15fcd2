"""A first rule file's mistakes, as a clinician makes them: a test's name where its code goes,
several problems in one file (each said in the same run, none said because of another), a
duration where a value goes, a duration misspelt; and `rules test DIR` running DIR's rules."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.support import run_cli
from timeline import codes
from timeline.engine.ruletest import rules_of
from timeline.errors import TimelineError
from timeline.ingest import append_rows
from timeline.language.loader import BUILTIN_DIR, RuleError, load_rules, rule_dirs
from timeline.store import Store

HEAD = 'id: r\nversion: "1"\ndescription: d\ncitation: c\n'
DURATION = "is not a duration (e.g. '12 hours', '7 days', '2 weeks', '3 months', '1 year')"


def messages(tmp_path: Path, body: str, head: str = HEAD) -> list[str]:
    """The problems of one rule file (``head``, then ``body``), as ``line: message``."""
    (tmp_path / "r.yaml").write_text(head + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    with pytest.raises(RuleError) as caught:
        load_rules(rule_dirs([tmp_path]))  # with the built-in pack, whose rules it may read
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


# ---- a test's name where its code goes --------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("CRP", "1988-5"), ("crp", "1988-5"), ("ESR", "4537-7"), ("Ferritin", "2276-4"), ("AST", "1920-8"),
        ("SGPT", "1742-6"), ("platelets", "777-3"), ("fibrinogen", "3255-7"), ("triglycerides", "2571-8"),
        ("haemoglobin", "718-7"), ("hemoglobin", "718-7"), ("Hb", "718-7"), ("WBC", "6690-2"),
        ("LDH", "2532-0"), ("hs-CRP", "30522-7"), ("hsCRP", "30522-7"),
    ],
)  # fmt: skip
def test_a_labs_name_or_abbreviation_is_read_as_its_loinc_code(written: str, code: str) -> None:
    named = codes.named_code(written)
    assert named is not None and named[1] == code
    assert named[0].startswith(f"{written} is LOINC {code}")


def test_a_name_that_is_no_codes_is_not_read_as_one() -> None:
    assert codes.named_code("cholesterol") is None


def test_d_dimer_is_named_as_a_lab_a_site_defines_with_its_loinc_codes() -> None:
    assert codes.named_code("D-dimer") == (
        "D-dimer is not a built-in code: define it in a codes.yaml "
        "(LOINC 48065-7, D-dimer FEU, or 48066-5, D-dimer DDU)",
        None,
    )


def test_an_assessment_code_in_capitals_is_given_in_lower_case() -> None:
    assert codes.named_code("CHAQ") == (
        "CHAQ is the assessment code 'chaq' (codes are written in lower case)",
        "chaq",
    )


def test_a_rule_selecting_a_lab_by_its_name_is_told_its_loinc_code(tmp_path: Path) -> None:
    assert messages(tmp_path, "define: {latest: {select: {kind: lab, code: CRP}, within: 30 days}}\n") == [
        "5: unknown code 'CRP': CRP is LOINC 1988-5 (code: 1988-5)"
    ]


def test_a_lab_named_as_a_value_is_told_how_to_read_its_latest_value(tmp_path: Path) -> None:
    assert messages(tmp_path, "define: {gt: [CRP, 10 mg/L]}\n") == [
        "5: 'CRP' is not an expression (a number, '6 mg/L', true/false or {operator: ...}); CRP is LOINC "
        "1988-5: its latest value is {latest: {select: {kind: lab, code: 1988-5}, within: 30 days}}"
    ]


def test_a_selector_named_as_a_value_is_told_how_to_read_its_latest_value(tmp_path: Path) -> None:
    body = "events:\n  crp: {kind: lab, code: 1988-5}\ndefine: {gt: [crp, 10 mg/L]}\n"
    [problem] = messages(tmp_path, body)
    assert problem.endswith(
        "; the latest value of the events 'crp' selects is {latest: {select: crp, within: 30 days}}"
    )


def test_ingest_answers_a_labs_name_with_its_loinc_code(tmp_path: Path) -> None:
    row = {
        "patient_id": "P",
        "kind": "lab",
        "occurred_at": "2009-01-01",
        "code": "CRP",
        "value": 5,
        "unit": "mg/L",
    }
    with Store.create(tmp_path / "s.duckdb") as store, pytest.raises(TimelineError) as caught:
        append_rows(store, [row], author="t", source="s")
    assert caught.value.details() == [
        "s: row 1, field code: unknown LOINC code 'CRP' for kind lab: CRP is LOINC 1988-5"
    ]


# ---- every problem of a file at once ----------------------------------------------------------


def test_independent_problems_of_one_file_are_reported_together_in_line_order(tmp_path: Path) -> None:
    body = """
    events:
      crp: {kind: lab, code: 1988-5}
    define:
      all:
        - exists: {select: crp, window: 30}
        - rule: {id: fever_free, with: {windw: 14 days}}
        - gt: [{latest: {select: crp, within: 30 days}}, true]
    """
    assert messages(tmp_path, body) == [
        f"9: 30 {DURATION}: a duration needs its unit, e.g. '30 days' (a window is a duration, ever, or "
        "{start, end, …})",
        "10: rule 'fever_free' has no parameter 'windw' (did you mean 'window'?)",
        "11: gt compares a number [mg/L] with a boolean",
    ]


def test_a_comparison_with_a_wrong_side_is_still_a_boolean_to_what_reads_it(tmp_path: Path) -> None:
    body = (
        "define:\n  all:\n    - gt: [{latest: {select: {kind: lab, code: 1988-5}, within: 30 days}}, true]\n"
    )
    assert messages(tmp_path, body) == ["7: gt compares a number [mg/L] with a boolean"]


def test_a_problem_in_one_item_does_not_stop_the_type_check_of_the_others(tmp_path: Path) -> None:
    body = "define:\n  all:\n    - al: [true]\n    - add: [1, 2]\n"
    assert messages(tmp_path, body) == [
        "7: unknown operator 'al' (did you mean 'all'?)",
        "8: all needs a boolean, but this is a number [1]",
    ]


def test_a_rule_missing_its_citation_is_still_type_checked(tmp_path: Path) -> None:
    head = 'id: r\nversion: "1"\ndescription: d\n'
    assert messages(tmp_path, "define: {not: 3}\n", head) == [
        "1: missing required key 'citation'",
        "4: not needs a boolean, but this is a number [1]",
    ]


def test_every_part_of_an_operator_is_checked(tmp_path: Path) -> None:
    body = "define: {latest: {select: {kind: lab, code: CRP, wher: {}}, within: 30 dayz, field: valeu}}\n"
    assert [m.split(": ", 1)[1] for m in messages(tmp_path, body)] == [
        "unknown code 'CRP': CRP is LOINC 1988-5 (code: 1988-5)",
        "unknown selector key 'wher' (did you mean 'where'?)",
        f"'30 dayz' {DURATION}; did you mean '30 days'?",
        "'valeu' is not a numeric event field (did you mean 'value'?)",
    ]


def test_every_unknown_key_of_an_operator_is_reported_and_none_called_missing(tmp_path: Path) -> None:
    body = "define: {latest: {selct: {kind: weight}, withn: 30 days}}\n"
    assert messages(tmp_path, body) == [
        "5: unknown key 'selct' for latest (did you mean 'select'?)",
        "5: unknown key 'withn' for latest (did you mean 'within'?)",
    ]


def test_a_with_value_of_a_rule_whose_file_failed_is_still_checked(tmp_path: Path) -> None:
    body = "define: {all: [{rule: {id: fever_free, with: {windw: 14 days}}}, {al: []}]}\n"
    assert "5: rule 'fever_free' has no parameter 'windw' (did you mean 'window'?)" in messages(
        tmp_path, body
    )


# ---- a duration where a value goes, and durations misspelt --------------------------------------


@pytest.mark.parametrize("threshold", ["5 days", "5 d"])
def test_a_lab_value_compared_with_a_duration_says_so(tmp_path: Path, threshold: str) -> None:
    body = f"define: {{lt: [{{latest: {{select: {{kind: lab, code: 1988-5}}, within: 30 days}}}}, {threshold}]}}\n"
    assert messages(tmp_path, body) == [
        f"5: lt compares CRP [mg/L] with a duration ({threshold}): a value to compare it with is a quantity "
        "in mg/L or a unit that converts to it (e.g. 5 mg/L); a duration says how long or how recent "
        "(within:, window:, held_for's duration)"
    ]


def test_a_duration_word_compared_with_a_time_is_told_its_ucum_spelling(tmp_path: Path) -> None:
    body = "define: {ge: [{time_since: {first: {kind: mas_episode}, unit: days}}, 5 days]}\n"
    assert messages(tmp_path, body) == ["5: 'days' is not a UCUM unit; UCUM writes it 'd'"]


def test_a_duration_word_as_a_value_compared_with_nothing_is_told_its_ucum_spelling(tmp_path: Path) -> None:
    assert messages(tmp_path, "define: {add: [5 days, 1 d]}\n") == [
        "5: 'days' is not a UCUM unit; UCUM writes it 'd'"
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("define: {exists: {select: {kind: mas_episode}, window: 14 dayz}}\n",
         f"5: '14 dayz' {DURATION}; did you mean '14 days'?"),
        ("define: {held_for: {expr: true, duration: 30 dias}}\n",
         f"5: '30 dias' {DURATION}; did you mean '30 days'?"),
        ("params:\n  w: {default: 14 dayz}\ndefine: {exists: {select: {kind: mas_episode}, window: {param: w}}}\n",
         f"6: '14 dayz' {DURATION}; did you mean '14 days'?"),
        ("define: {rule: {id: fever_free, with: {window: 14 dayz}}}\n",
         f"5: window: '14 dayz' {DURATION}; did you mean '14 days'?"),
        ("define: {rule: {id: fever_free, with: {window: 5 mg}}}\n",
         f"5: fever_free.window: '5 mg' {DURATION}; the default is 7 days"),
    ],
    ids=["window", "held-for", "parameter-default", "with-value", "with-value-of-another-kind"],
)  # fmt: skip
def test_a_wrong_duration_says_a_duration_is_needed_with_examples(
    tmp_path: Path, body: str, message: str
) -> None:
    assert messages(tmp_path, body) == [message]


def test_a_number_parameter_read_as_a_window_says_the_window_needs_a_duration(tmp_path: Path) -> None:
    body = (
        "params:\n  w: {default: 30}\ndefine: {exists: {select: {kind: mas_episode}, window: {param: w}}}\n"
    )
    assert messages(tmp_path, body) == [
        f"7: exists's window needs a duration ({DURATION.split('(', 1)[1][:-1]}), but parameter 'w' is 30: "
        "give its default a unit, e.g. '30 days'"
    ]


# ---- rules test DIR ----------------------------------------------------------------------------


SITE = Path("examples/site_rules")


def test_the_rules_of_a_directory_are_those_of_its_files_overrides_included(tmp_path: Path) -> None:
    shutil.copytree(SITE, tmp_path, dirs_exist_ok=True)
    shutil.copy(BUILTIN_DIR / "sjia" / "crp_normal.yaml", tmp_path)
    rules = load_rules(rule_dirs([tmp_path]))
    assert set(rules_of(rules, [tmp_path])) == {
        "crp_normal",
        "crp_normal_anajis",
        "ferritin_high",
        "neutropenia_grade3",
    }


def test_rules_test_of_a_directory_runs_its_rules_examples_only() -> None:
    result = run_cli("rules", "test", SITE, "--json")
    assert result.exit_code == 0, result.stderr
    tested = {r["rule"].split("@")[0] for r in json.loads(result.stdout)["examples"]}
    assert tested == {"crp_normal_anajis", "ferritin_high", "neutropenia_grade3"}


def test_rules_test_of_a_directory_without_examples_says_nothing_was_tested(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(HEAD + "define: true\n", encoding="utf-8")
    result = run_cli("rules", "test", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "carries examples: nothing was tested (--all runs the built-in pack's too)" in result.stderr
    assert result.stdout.strip() == "0 passed, 0 failed"
