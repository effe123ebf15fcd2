"""A new site's first rule pack, as helper 62 wrote one (findings in their audit): a duration
parameter compared with a time, a lab limit in the unit a lab also reports in, counts, and the
messages an author meets on the way."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import CheckedSession, store_with
from tests.support import run_cli
from timeline.language.loader import RuleError, load_rules, rule_dirs

HEAD = 'id: r\nversion: "1"\ndescription: d\ncitation: c\n'
CANA = "{time_since: {first: {kind: medication_start, drug: canakinumab}, unit: months}}"
CANA_START = (
    "{patient_id: X, kind: medication_start, drug: canakinumab, dose: 4, dose_unit: mg/kg, "
    'frequency: every_4_weeks, occurred_at: "2020-01-10"}'
)


def write(tmp_path: Path, body: str, head: str = HEAD, name: str = "r") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(head + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def messages(tmp_path: Path, body: str, head: str = HEAD) -> list[str]:
    """The problems of one rule file (``head``, then ``body``), as ``line: message``."""
    write(tmp_path, body, head)
    with pytest.raises(RuleError) as caught:
        load_rules(rule_dirs([tmp_path]))  # with the built-in pack, whose rules it may read
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def param(tmp_path: Path, body: str, name: str, **given: str) -> tuple[object, str | None]:
    """A parameter of rule r as loaded (with ``given`` as --param values): (value, unit)."""
    write(tmp_path, body)
    rules = load_rules(rule_dirs([tmp_path]), params={"r": dict(given)} if given else None)
    spec = rules.rules["r"].param(name)
    return spec.effective, spec.unit


# ---- a duration parameter compared with a time (finding 3) --------------------------------------

MIN_TIME = f"""
params:
  min_time: {{default: 6 months}}
define:
  ge: [{CANA}, {{param: min_time}}]
"""


def test_a_duration_parameter_read_as_a_value_is_a_quantity_of_time(tmp_path: Path) -> None:
    assert param(tmp_path, MIN_TIME, "min_time") == (6.0, "mo")


@pytest.mark.parametrize(("default", "unit"), [("183 days", "d"), ("6 mo", "mo"), ("26 weeks", "wk")])
def test_a_duration_parameter_in_any_unit_is_read_in_its_ucum_unit(
    tmp_path: Path, default: str, unit: str
) -> None:
    body = MIN_TIME.replace("6 months", default)
    assert param(tmp_path, body, "min_time") == (float(default.split()[0]), unit)


def test_a_duration_given_for_a_duration_parameter_read_as_a_value_is_accepted(tmp_path: Path) -> None:
    """Helper 62: `--param cana_6_months.min_time=3 months` was refused."""
    assert param(tmp_path, MIN_TIME, "min_time", min_time="3 months") == (3.0, "mo")


def test_a_duration_parameter_compared_with_time_since_answers_as_months(tmp_path: Path) -> None:
    """6 months is 6 mo, as time_since counts them: 182 days (5.98 mo) is short of it, 183 past."""
    example = f"""
    examples:
      - name: six months
        events: [{CANA_START}]
        expect:
          - {{at: "2020-07-10", value: false}}
          - {{at: "2020-07-11", value: true}}
      - name: at 183 days
        params: {{min_time: 183 days}}
        events: [{CANA_START}]
        expect:
          - {{at: "2020-07-10", value: false}}
          - {{at: "2020-07-12", value: true}}
    """
    write(tmp_path, MIN_TIME + textwrap.dedent(example))
    result = run_cli("rules", "test", tmp_path)
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "2 passed, 0 failed"), result.output


def test_a_duration_parameter_read_both_as_a_window_and_a_value_says_to_split_it(tmp_path: Path) -> None:
    body = f"""
    params:
      t: {{default: 6 months}}
    define:
      all:
        - ge: [{CANA}, {{param: t}}]
        - exists: {{select: {{kind: mas_episode}}, window: {{param: t}}}}
    """
    assert messages(tmp_path, body) == [
        "9: parameter 't' is a duration read as a length or a window (or passed on in a with:) "
        "elsewhere in the definition, and cannot also be a value: give the value a parameter of "
        "its own, e.g. t_value: {default: 6 mo}"
    ]


def test_a_duration_given_for_a_plain_number_parameter_says_to_give_the_default_a_unit(
    tmp_path: Path,
) -> None:
    write(tmp_path, MIN_TIME.replace("6 months", "6"))
    with pytest.raises(RuleError) as caught:
        load_rules(rule_dirs([tmp_path]), params={"r": {"min_time": "3 months"}})
    assert str(caught.value.problems[0]).endswith(
        "r.min_time: '3 months' is not the same kind of value as the default, 6: the default is a "
        "plain number, read in the unit of what the rule compares it with; write the rule's default "
        "with the unit it is meant in (e.g. '6 months' for months), and a duration given for it is converted"
    )


def test_months_written_where_a_value_goes_is_told_its_ucum_spelling(tmp_path: Path) -> None:
    """Helper 62: '6 months' got "'months' is not a UCUM unit" with no hint; days and weeks had one."""
    assert messages(tmp_path, f"define: {{ge: [{CANA}, 6 months]}}\n") == [
        "5: 'months' is not a UCUM unit; UCUM writes it 'mo'"
    ]


# ---- a lab limit in a unit ingest converts with the code's molar mass (finding 5) ---------------

TG = "{latest: {select: {kind: lab, code: 2571-8}, within: 3 days}}"
TG_ROWS = [
    {"patient_id": "X", "kind": "lab", "code": "2571-8", "occurred_at": "2020-03-01", "value": 155, "unit": "mg/dL"},
    {"patient_id": "X", "kind": "lab", "code": "2571-8", "occurred_at": "2020-03-02", "value": 157, "unit": "mg/dL"},
    {"patient_id": "Y", "kind": "lab", "code": "2571-8", "occurred_at": "2020-03-01", "value": 1.8, "unit": "mmol/L"},
]  # fmt: skip


def _tg_answers(tmp_path: Path, define: str) -> list[object]:
    """rule r's answers for X on 1 and 2 March (155, 157 mg/dL) and Y on 1 March (1.8 mmol/L),
    each the same in the replay and the SQL engine."""
    (tmp_path / "rules").mkdir()
    write(tmp_path / "rules", f"define: {define}\n")
    store = store_with(tmp_path / "s.duckdb", TG_ROWS)
    session = CheckedSession(store, load_rules(rule_dirs([tmp_path / "rules"])))
    at = [("X", "2020-03-01"), ("X", "2020-03-02"), ("Y", "2020-03-01")]
    return [session.state(p, d, ["r"])[0].value for p, d in at]


def test_a_triglyceride_limit_in_mmol_per_litre_is_read_with_its_molar_mass(tmp_path: Path) -> None:
    """Helper 62: 'units do not convert: mmol/L vs mg/dL', though ingest converts mmol/L of
    triglycerides (885.7 g/mol): 1.76 mmol/L is 155.9 mg/dL (DOMAIN.md: 156)."""
    assert _tg_answers(tmp_path, f"{{gt: [{TG}, 1.76 mmol/L]}}") == [False, True, True]


def test_a_triglyceride_limit_in_mmol_per_litre_on_the_left_is_read_with_its_molar_mass(
    tmp_path: Path,
) -> None:
    assert _tg_answers(tmp_path, f"{{lt: [1.76 mmol/L, {TG}]}}") == [False, True, True]


def test_a_triglyceride_parameter_in_mmol_per_litre_is_read_in_the_labs_unit(tmp_path: Path) -> None:
    write(
        tmp_path, f"params: {{above: {{default: 1.76 mmol/L}}}}\ndefine: {{gt: [{TG}, {{param: above}}]}}\n"
    )
    spec = load_rules(rule_dirs([tmp_path])).rules["r"].param("above")
    assert (round(float(spec.effective), 1), spec.unit) == (155.9, "mg/dL")


def test_a_site_value_in_mmol_per_litre_for_such_a_parameter_is_converted_too(tmp_path: Path) -> None:
    write(
        tmp_path, f"params: {{above: {{default: 1.76 mmol/L}}}}\ndefine: {{gt: [{TG}, {{param: above}}]}}\n"
    )
    rules = load_rules(rule_dirs([tmp_path]), params={"r": {"above": "2 mmol/L"}})
    assert round(float(rules.rules["r"].param("above").effective), 2) == 177.14


TG_LIMIT = f"define: {{gt: [{TG}, {{param: above}}]}}\n"


def test_a_site_value_in_mg_per_dl_for_a_parameter_in_mmol_per_litre_is_read_by_molar_mass(
    tmp_path: Path,
) -> None:
    """Audit: '156 mg/dL' for a default of 1.76 mmol/L was refused ("cannot convert 'mg/dL' to
    'mmol/L'"), though the converse of a default in mmol/L was read by the lab's molar mass."""
    body = f"params: {{above: {{default: 1.76 mmol/L}}}}\n{TG_LIMIT}"
    assert param(tmp_path, body, "above", above="156 mg/dL") == (156.0, "mg/dL")


def test_a_site_value_in_mmol_per_litre_for_a_parameter_in_mg_per_dl_is_read_by_molar_mass(
    tmp_path: Path,
) -> None:
    value, unit = param(
        tmp_path, f"params: {{above: {{default: 156 mg/dL}}}}\n{TG_LIMIT}", "above", above="1.76 mmol/L"
    )
    assert (round(float(value), 4), unit) == (155.8832, "mg/dL")  # 1.76 × 885.7 / 10


def test_a_site_value_by_molar_mass_decides_as_the_same_limit_in_the_labs_unit(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    write(tmp_path / "rules", f"params: {{above: {{default: 1.76 mmol/L}}}}\n{TG_LIMIT}")
    (tmp_path / "rules" / "params.yaml").write_text("r: {above: 156 mg/dL}\n", encoding="utf-8")
    store = store_with(tmp_path / "s.duckdb", TG_ROWS)
    session = CheckedSession(store, load_rules(rule_dirs([tmp_path / "rules"])))
    # 155 and 157 mg/dL beside 156; 1.8 mmol/L is 159.4 mg/dL
    at = [("X", "2020-03-01"), ("X", "2020-03-02"), ("Y", "2020-03-01")]
    assert [session.state(p, d, ["r"])[0].value for p, d in at] == [False, True, True]


def test_a_site_value_in_a_where_by_molar_mass_is_read_so(tmp_path: Path) -> None:
    body = (
        "params: {above: {default: 1.76 mmol/L}}\n"
        "define: {exists: {select: {kind: lab, code: 2571-8, where: {value: {gt: {param: above}}}}, window: 1 days}}\n"
    )
    assert param(tmp_path, body, "above", above="156 mg/dL") == (156.0, "mg/dL")


def test_a_site_value_in_an_amount_of_substance_for_a_lab_without_a_molar_mass_names_why(
    tmp_path: Path,
) -> None:
    crp = "{latest: {select: {kind: lab, code: 1988-5}, within: 3 days}}"
    write(tmp_path, f"params: {{above: {{default: 5 mg/L}}}}\ndefine: {{gt: [{crp}, {{param: above}}]}}\n")
    with pytest.raises(RuleError) as caught:
        load_rules(rule_dirs([tmp_path]), params={"r": {"above": "1 mmol/L"}})
    assert [str(p) for p in caught.value.problems] == [
        "--param: r.above: '1 mmol/L' is an amount of substance (mmol/L) and the parameter's unit, "
        "mg/L, a mass: they convert only by the molar mass of what is measured, and it is compared "
        "with no lab whose code gives one (a site's codes.yaml gives a code's molar_mass); give the "
        "value in mg/L"
    ]


def test_rules_check_refuses_a_site_value_by_molar_mass_for_no_lab_at_its_line(tmp_path: Path) -> None:
    crp = "{latest: {select: {kind: lab, code: 1988-5}, within: 3 days}}"
    write(tmp_path, f"params: {{above: {{default: 5 mg/L}}}}\ndefine: {{gt: [{crp}, {{param: above}}]}}\n")
    (tmp_path / "params.yaml").write_text("r:\n  above: 1 mmol/L\n", encoding="utf-8")
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8
    assert f"{tmp_path / 'params.yaml'}:2:" in result.stderr
    assert "they convert only by the molar mass of what is measured" in " ".join(result.stderr.split())


def test_rules_show_gives_a_site_value_by_molar_mass_in_the_labs_unit(tmp_path: Path) -> None:
    write(tmp_path, f"params: {{above: {{default: 1.76 mmol/L}}}}\n{TG_LIMIT}")
    result = run_cli("rules", "show", "r", "--rules", tmp_path, "--param", "r.above=156 mg/dL")
    assert result.exit_code == 0
    assert "param above = 156.0 mg/dL (default 155.8832 mg/dL)" in " ".join(result.stdout.split())


def test_a_triglyceride_limit_in_mmol_per_litre_in_a_where_is_read_with_its_molar_mass(
    tmp_path: Path,
) -> None:
    define = (
        "{exists: {select: {kind: lab, code: 2571-8, where: {value: {gt: 1.76 mmol/L}}}, window: 1 days}}"
    )
    assert _tg_answers(tmp_path, define) == [False, True, True]


def test_a_limit_in_mmol_per_litre_for_a_lab_without_a_molar_mass_is_still_refused(tmp_path: Path) -> None:
    """CRP has no molar mass in the code table: ingest refuses mmol/L for it, and so do rules."""
    crp = "{latest: {select: {kind: lab, code: 1988-5}, within: 3 days}}"
    assert messages(tmp_path, f"define: {{gt: [{crp}, 1 mmol/L]}}\n") == [
        "5: units do not convert: mmol/L vs mg/L"
    ]


# ---- the documentation's rule files load as written (finding 14) ---------------------------------

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _yaml_blocks() -> list[tuple[str, str]]:
    """Every ```yaml block of the README and docs/ that holds a rule's ``define:``, as
    (``FILE:LINE``, text). A block beginning ``id:`` is a whole rule file; one that is an
    excerpt says so on its first line (``# an excerpt``)."""
    import re

    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            if re.search(r"^define:", m.group(1), re.M):
                out.append((f"{doc.name}:{text[: m.start()].count(chr(10)) + 1}", m.group(1)))
    return out


def test_the_documentation_shows_rule_files() -> None:
    """The test below cannot pass by finding none."""
    assert len([b for _, b in _yaml_blocks() if b.startswith("id:")]) >= 4


@pytest.mark.parametrize(("where", "block"), _yaml_blocks(), ids=[w for w, _ in _yaml_blocks()])
def test_every_rule_file_the_documentation_shows_loads_as_written(
    tmp_path: Path, where: str, block: str
) -> None:
    """Helper 62: the README's crp_strict lacked version, description and citation."""
    assert block.startswith(("id:", "# an excerpt")), f"{where}: a whole rule file, or marked as an excerpt"
    if block.startswith("# an excerpt"):
        return
    rule_id = block.split()[1]
    (tmp_path / f"{rule_id}.yaml").write_text(block, encoding="utf-8")
    rules = load_rules(rule_dirs([tmp_path]))
    assert rules.rules[rule_id].source == str(tmp_path / f"{rule_id}.yaml")
    if rules.rules[rule_id].examples:
        result = run_cli("rules", "test", tmp_path, "--rule", rule_id)
        assert result.exit_code == 0, result.output


# ---- counts have no unit (finding 12) ------------------------------------------------------------

EPISODES = "{episode_count: {episodes: {select: {kind: mas_episode}}, window: 1 year}}"


def test_a_parameter_in_a_unit_compared_with_a_count_is_told_at_its_default(tmp_path: Path) -> None:
    """Helper 62: 'units do not convert: mg vs 1', at the {param: n} line."""
    assert messages(
        tmp_path, f"params: {{n: {{default: 2 mg}}}}\ndefine: {{ge: [{EPISODES}, {{param: n}}]}}\n"
    ) == [
        "5: parameter 'n' is compared with the episode count, a count, which has no unit: write its "
        "default without 'mg', e.g. 2"
    ]


def test_a_quantity_compared_with_a_count_is_told_to_drop_its_unit(tmp_path: Path) -> None:
    assert messages(tmp_path, "define: {ge: [{count_true: [{rule: fever}]}, 2 mg]}\n") == [
        "5: count_true is a count, which has no unit: write 2, without 'mg'"
    ]


def test_a_duration_compared_with_a_count_is_told_to_write_the_plain_number(tmp_path: Path) -> None:
    """Helper 62: '(e.g. 2 1)'."""
    assert messages(tmp_path, f"define: {{ge: [{EPISODES}, 2 days]}}\n") == [
        "5: ge compares the episode count, a count, with a duration (2 days): write the plain number "
        "(e.g. 2); a duration says how long or how recent (within:, window:, held_for's duration)"
    ]


def test_a_count_written_with_a_counting_word_is_told_to_write_the_plain_number(tmp_path: Path) -> None:
    assert messages(tmp_path, f"define: {{ge: [{EPISODES}, 2 episodes]}}\n") == [
        "5: 'episodes' is not a UCUM unit; a count has no unit: write the plain number, 2"
    ]


# ---- durations in other languages (finding 13) -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "meant"),
    [("4 semanas", "4 weeks"), ("30 días", "30 days"), ("2 mois", "2 months"), ("1 año", "1 year")],
)
def test_a_duration_in_spanish_portuguese_or_french_is_told_the_english_word(
    tmp_path: Path, written: str, meant: str
) -> None:
    """Helper 62: '4 semanas' got "'semanas' is not a UCUM unit", while '30 dias' got a hint."""
    [problem] = messages(tmp_path, f"params: {{w: {{default: {written}}}}}\n"
                         "define: {exists: {select: {kind: mas_episode}, window: {param: w}}}\n")  # fmt: skip
    assert problem.endswith(f"; did you mean '{meant}'?")


def test_a_foreign_duration_where_a_value_goes_is_told_its_ucum_spelling(tmp_path: Path) -> None:
    body = "define: {ge: [{time_since: {first: {kind: mas_episode}, unit: days}}, 4 semanas]}\n"
    assert messages(tmp_path, body) == [
        "5: 'semanas' is not a UCUM unit; 4 weeks where a value goes is written in UCUM, '4 wk'"
    ]


# ---- smaller authoring messages (finding 13) -------------------------------------------------------

FEVER_EVENT = '[{patient_id: X, kind: finding, code: fever, occurred_at: "2020-01-01"}]'


def test_an_example_with_expected_for_expect_gets_a_did_you_mean(tmp_path: Path) -> None:
    body = f"""
    define: {{rule: fever}}
    examples:
      - name: x
        events: {FEVER_EVENT}
        expected: [{{at: "2020-01-01", value: true}}]
    """
    assert messages(tmp_path, body) == ["9: unknown key 'expected' for an example (did you mean 'expect'?)"]


def test_a_reason_on_an_expected_false_is_a_problem_at_its_line(tmp_path: Path) -> None:
    """Helper 62: rules test then said 'expected false, got false; wanted a reason'."""
    body = f"""
    define: {{rule: fever}}
    examples:
      - name: x
        events: {FEVER_EVENT}
        expect:
          - {{at: "2020-01-01", value: false, reason_contains: too old}}
    """
    assert messages(tmp_path, body) == [
        "10: reason_contains is for an expected unknown (an unknown says why); false has no reason: "
        "remove it, or expect unknown"
    ]


def test_a_second_rule_in_one_file_is_told_one_rule_per_file(tmp_path: Path) -> None:
    [problem] = messages(tmp_path, "define: {rule: fever}\n---\nid: s\n")
    assert problem == (
        "6: YAML syntax error: but found another document (a rule file holds one rule: put the "
        "rule after --- in a file of its own)"
    )


def test_a_misindented_key_of_an_operator_is_named_with_the_keys_found(tmp_path: Path) -> None:
    """Helper 62: within: as a sibling of latest: got only 'exactly one operator'."""
    body = """
    define:
      latest: {select: {kind: lab, code: 1988-5}}
      within: 3 days
    """
    assert messages(tmp_path, body) == [
        "6: an expression is a mapping with exactly one operator, but this one has latest, within: "
        "the others belong inside latest (indent them under it)"
    ]


def test_rules_check_notes_a_file_not_named_after_its_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path, "define: {rule: fever}\n", head=HEAD.replace("id: r", "id: on_cana_x"), name="on_cana"
    )
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 0
    assert (
        f"note: {path} holds rule 'on_cana_x': a file named after its rule (on_cana_x.yaml) is found by its name"
        in " ".join(result.stderr.split())
    )


def test_rules_check_of_the_built_in_pack_notes_nothing() -> None:
    result = run_cli("rules", "check")
    assert (result.exit_code, result.stderr) == (0, "")


# ---- a number without its unit, a limit no value reaches (finding 11) -----------------------------

CRP = "{latest: {select: {kind: lab, code: 1988-5}, within: 14 days}}"


def test_a_parameter_without_a_unit_is_shown_in_the_unit_it_is_read_in(tmp_path: Path) -> None:
    """Helper 62: `rules show` printed `param limit = 3.0`, no unit."""
    write(tmp_path, f"params: {{limit: {{default: 3}}}}\ndefine: {{le: [{CRP}, {{param: limit}}]}}\n")
    result = run_cli("rules", "show", "r", "--rules", tmp_path)
    assert "param limit = 3.0 mg/L (written without a unit: read in mg/L, the unit of what it is compared with or given to)" in " ".join(result.stdout.split())  # fmt: skip


def test_a_parameter_without_a_unit_passed_to_another_rule_is_read_in_its_parameters_unit(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "params: {limit: {default: 3}}\ndefine: {rule: {id: crp_normal, with: {upper: {param: limit}}}}\n",
    )
    assert load_rules(rule_dirs([tmp_path])).rules["r"].param("limit").read_in == "mg/L"


def test_rules_check_warns_of_a_parameter_default_without_its_unit(tmp_path: Path) -> None:
    path = write(tmp_path, f"params: {{limit: {{default: 3}}}}\ndefine: {{le: [{CRP}, {{param: limit}}]}}\n")
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 0
    assert (
        f"warning: {path}: parameter 'limit' has a default without a unit (3): it is read in mg/L, the unit "
        "of what it is compared with or given to, as a site's number for it is; write '3 mg/L'"
    ) in " ".join(result.stderr.split())


def test_a_score_cut_off_without_a_unit_is_not_warned_of() -> None:
    """A score's number is plain: the pack's MS score cut-off, -2.1, is written so."""
    rules = load_rules(rule_dirs([]))
    assert rules.rules["ms_score_suggests_mas"].param("cutoff").unit is None
    assert rules.warnings == []


def test_rules_check_warns_of_a_limit_outside_the_labs_plausible_range(tmp_path: Path) -> None:
    """Helper 62: 1000 mg/dL of ferritin is 10⁷ ng/mL, past its plausible 500,000: never true."""
    ferritin = "{latest: {select: {kind: lab, code: 2276-4}, within: 14 days}}"
    path = write(tmp_path, f"define: {{gt: [{ferritin}, 1000 mg/dL]}}\n")
    result = run_cli("rules", "check", tmp_path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["warnings"] == [
        f"{path}: 1000 mg/dL is 1e+07 ng/mL, outside the values ferritin can take (0–500000 ng/mL, as "
        "ingest checks them): the comparison never changes"
    ]


CRP_ABOVE = "{exists: {select: {kind: lab, code: 1988-5, where: {value: {gt: LIMIT}}}, window: 14 days}}"


def test_rules_check_warns_of_a_where_limit_outside_the_labs_plausible_range(tmp_path: Path) -> None:
    """Audit: a limit inside a selector's where: was never checked against the plausible range."""
    path = write(tmp_path, f"define: {CRP_ABOVE.replace('LIMIT', '2000 mg/L')}\n")
    result = run_cli("rules", "check", tmp_path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["warnings"] == [
        f"{path}: 2000 mg/L is 2000 mg/L, outside the values CRP can take (0–1000 mg/L, as ingest "
        "checks them): the where: of selector 'CRP' selects every CRP or none"
    ]


def test_a_where_parameter_outside_the_labs_plausible_range_is_warned_of(tmp_path: Path) -> None:
    write(
        tmp_path,
        f"params: {{limit: {{default: 200 mg/dL}}}}\ndefine: {CRP_ABOVE.replace('LIMIT', '{param: limit}')}\n",
    )
    (warning,) = load_rules(rule_dirs([tmp_path])).warnings
    assert "parameter 'limit' (200 mg/dL) is 2000 mg/L, outside the values CRP can take" in warning


def test_a_where_limit_without_a_unit_is_read_in_the_labs_unit_for_the_range(tmp_path: Path) -> None:
    write(tmp_path, f"define: {CRP_ABOVE.replace('LIMIT', '5000')}\n")
    (warning,) = load_rules(rule_dirs([tmp_path])).warnings
    assert "5000 is 5000 mg/L, outside the values CRP can take" in warning


def test_a_where_limit_inside_the_labs_plausible_range_is_not_warned_of(tmp_path: Path) -> None:
    write(tmp_path, f"define: {CRP_ABOVE.replace('LIMIT', '50 mg/dL')}\n")  # 500 mg/L
    assert load_rules(rule_dirs([tmp_path])).warnings == []


def test_a_limit_inside_the_labs_plausible_range_is_not_warned_of(tmp_path: Path) -> None:
    ferritin = "{latest: {select: {kind: lab, code: 2276-4}, within: 14 days}}"
    write(tmp_path, f"define: {{gt: [{ferritin}, 1000 ug/L]}}\n")
    assert load_rules(rule_dirs([tmp_path])).warnings == []


# ---- a site value by molar mass for a parameter passed on in a with: (helper 81) ----------------

STRICT_HEAD = 'id: s\nversion: "1"\ndescription: d\ncitation: c\n'
# rule s reads rule r (a triglyceride limit) at its own parameter: r(above=s.limit)
STRICT = "params: {limit: {default: 1.5 mmol/L}}\ndefine: {rule: {id: r, with: {above: {param: limit}}}}\n"


def _passed_on(tmp_path: Path, r_body: str = TG_LIMIT, **given: str) -> Any:
    write(tmp_path, f"params: {{above: {{default: 1.76 mmol/L}}}}\n{r_body}")
    write(tmp_path, STRICT, head=STRICT_HEAD, name="s")
    return load_rules(rule_dirs([tmp_path]), params={"s": dict(given)} if given else None)


def test_a_site_value_in_mg_per_dl_passed_on_in_a_with_is_read_by_the_labs_molar_mass(tmp_path: Path) -> None:
    rules = _passed_on(tmp_path, limit="133 mg/dL")
    assert rules.rules["r(above=s.limit)"].param("above").effective == 133.0


def test_the_passing_rules_own_value_is_converted_by_the_same_molar_mass(tmp_path: Path) -> None:
    rules = _passed_on(tmp_path, limit="133 mg/dL")
    spec = rules.rules["s"].param("limit")
    assert (round(float(spec.effective), 6), spec.unit) == (1.501637, "mmol/L")  # 133 × 10 / 885.7


def test_a_site_value_in_the_parameters_unit_passed_on_is_converted_as_before(tmp_path: Path) -> None:
    rules = _passed_on(tmp_path, limit="1.2 mmol/L")
    assert round(float(rules.rules["r(above=s.limit)"].param("above").effective), 4) == 106.284


def test_a_site_value_by_molar_mass_passed_on_decides_as_the_same_limit_in_the_labs_unit(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules").mkdir()
    _passed_on(tmp_path / "rules")
    (tmp_path / "rules" / "params.yaml").write_text("s: {limit: 156 mg/dL}\n", encoding="utf-8")
    store = store_with(tmp_path / "st.duckdb", TG_ROWS)
    session = CheckedSession(store, load_rules(rule_dirs([tmp_path / "rules"])))
    at = [("X", "2020-03-01"), ("X", "2020-03-02"), ("Y", "2020-03-01")]
    assert [session.state(p, d, ["s"])[0].value for p, d in at] == [False, True, True]


def test_a_site_value_by_molar_mass_passed_on_to_a_lab_without_one_is_still_refused(tmp_path: Path) -> None:
    crp = "{latest: {select: {kind: lab, code: 1988-5}, within: 3 days}}"
    write(tmp_path, f"params: {{above: {{default: 5 mg/L}}}}\ndefine: {{gt: [{crp}, {{param: above}}]}}\n")
    write(tmp_path, STRICT.replace("1.5 mmol/L", "3 mg/L"), head=STRICT_HEAD, name="s")
    with pytest.raises(RuleError) as caught:
        load_rules(rule_dirs([tmp_path]), params={"s": {"limit": "1 mmol/L"}})
    assert "it is compared with no lab whose code gives one" in str(caught.value.problems[0])
