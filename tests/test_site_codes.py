"""A site's own codes: a codes.yaml beside its rules, registered in the store with
`timeline codes add`, read by the rule loader, ingest, the engine, explain and the exports."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import raw_connection, run_cli, snapshot
from timeline import codes, registry
from timeline.engine.evaluate import Session
from timeline.engine.ruletest import run_examples
from timeline.errors import IngestError
from timeline.ingest import IngestResult, append_rows, ingest_file
from timeline.language.loader import RuleError, load_rules, rule_dirs
from timeline.meds import export_meds
from timeline.store import Store

CODES = """\
labs:
  26499-4:
    name: neutrophils (absolute count)
    unit: 10*9/L
    low: 0
    high: 100
    unit_factors: count
assessments:
  jadas10: {name: JADAS-10, unit: "{score}", low: 0, high: 40}
findings:
  pericarditis: pericarditis
"""

ANC_RULE = """\
id: anc_low
version: 1
description: absolute neutrophil count at most a limit within 30 days
citation: CTCAE v5.0, neutrophil count decreased
params:
  limit: {default: 1.0, unit: 10*9/L}
define:
  le:
    - latest: {select: {kind: lab, code: 26499-4}, within: 30 days}
    - param: limit
examples:
  - name: 800 per microlitre is 0.8 x 10^9/L
    events:
      - {patient_id: A, kind: birth, occurred_at: 2015-01-01, sex: female}
      - {patient_id: A, kind: lab, code: 26499-4, occurred_at: 2020-01-01, value: 800, unit: /uL}
    expect:
      - {at: 2020-01-10, value: true}
"""

BIRTH = {"patient_id": "A", "kind": "birth", "occurred_at": "2015-01-01", "sex": "female"}


def anc(value: float, unit: str, day: str = "2020-01-01") -> dict[str, object]:
    return {
        "patient_id": "A",
        "kind": "lab",
        "code": "26499-4",
        "occurred_at": day,
        "value": value,
        "unit": unit,
    }


@pytest.fixture
def site(tmp_path: Path) -> Path:
    d = tmp_path / "site"
    d.mkdir()
    (d / "codes.yaml").write_text(CODES)
    (d / "anc_low.yaml").write_text(ANC_RULE)
    return d


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(RuleError) as info:
        load_rules([directory])
    return [str(p) for p in info.value.problems]


def codes_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "c"
    d.mkdir(exist_ok=True)
    (d / "codes.yaml").write_text(textwrap.dedent(text))
    return d


# ---- the LOINC check digit -------------------------------------------------------------


def test_the_check_digit_of_every_built_in_loinc_code_is_right() -> None:
    loincs = [*codes.LABS, *(v.code for v in codes.VITALS.values())]
    assert all(codes.loinc_check_digit(c.split("-")[0]) == int(c.split("-")[1]) for c in loincs)


@given(st.integers(min_value=1, max_value=9_999_999), st.data())
def test_the_check_digit_changes_when_any_one_digit_changes(number: int, data: st.DataObject) -> None:
    digits = str(number)
    at = data.draw(st.integers(min_value=0, max_value=len(digits) - 1))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != digits[at]]))
    typo = digits[:at] + other + digits[at + 1 :]
    assert codes.loinc_check_digit(typo) != codes.loinc_check_digit(digits)


# ---- codes.yaml in a rule directory ---------------------------------------------------------


def test_a_rule_may_name_a_lab_its_directory_defines(site: Path) -> None:
    rules = load_rules([site])
    assert rules.codebook.labs["26499-4"].unit == "10*9/L"


def test_a_rule_naming_a_code_no_codes_yaml_defines_is_refused_with_where_to_define_it(site: Path) -> None:
    (site / "codes.yaml").unlink()
    (found,) = problems_of(site)
    assert "anc_low.yaml:9" in found and "unknown code '26499-4'" in found and "codes.yaml" in found


def test_a_site_codes_unit_is_the_unit_of_the_rules_comparisons(site: Path) -> None:
    (site / "anc_low.yaml").write_text(
        ANC_RULE.replace("default: 1.0, unit: 10*9/L", "default: 1000, unit: /uL")
    )
    rules = load_rules([site])
    results = run_examples(rules, [site], ["anc_low"])
    assert [r.passed for r in results] == [True]


def test_a_rule_directorys_examples_may_record_its_codes(site: Path) -> None:
    rules = load_rules([site])
    assert [r.passed for r in run_examples(rules, [site], ["anc_low"])] == [True]


LAB = "labs:\n  26499-4: %s\n"
TWO_KINDS = 'assessments:\n  foo: {name: x, unit: "{score}", low: 0, high: 4}\nfindings:\n  foo: foo thing\n'


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("labs:\n  26499-5: {name: ANC, unit: 10*9/L, low: 0, high: 100}\n", 2,
                     "the check digit of 26499 is 4", id="wrong-check-digit"),
        pytest.param("labs:\n  0026499-4: {name: x, unit: mg/L, low: 0, high: 1}\n", 2,
                     "is not a LOINC code", id="loinc-leading-zero"),
        pytest.param("labs:\n  2276-4: {name: ferritin, unit: ug/L, low: 0, high: 500000}\n", 2,
                     "built-in lab code (ferritin)", id="built-in-lab"),
        pytest.param("frequencies:\n  weekly: 0.2\n", 2, "built-in frequency code (0.1429 doses a day)",
                     id="built-in-frequency"),
        pytest.param("lab:\n  26499-4: {name: ANC, unit: 10*9/L, low: 0, high: 100}\n", 1,
                     "did you mean 'labs'", id="unknown-section"),
        pytest.param("findings:\n  Pericarditis: pericarditis\n", 2, "local codes are lowercase", id="uppercase"),
        pytest.param("findings:\n  pericarditis:\n", 2, "give what it stands for", id="finding-without-name"),
        pytest.param(TWO_KINDS, 4, "also defined at line 2", id="one-code-two-sections"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0}", 2, "needs high", id="no-high"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0, high: 100, unit_factor: count}", 2,
                     "did you mean 'unit_factors'", id="unknown-key"),
        pytest.param(LAB % "{name: ANC, unit: tens, low: 0, high: 100}", 2, "unit 'tens' is not a UCUM unit",
                     id="not-ucum"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 100, high: 0}", 2, "low 100 is above high 0",
                     id="low-above-high"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0, high: lots}", 2, "high must be a number",
                     id="high-not-a-number"),
        pytest.param(LAB % ("{name: x, unit: mg/L, low: 0, high: 1" + "0" * 400 + "}"), 2, "high must be a number",
                     id="integer-too-large"),
        pytest.param(LAB % "{name: {a: 1}, unit: mg/L, low: 0, high: 1}", 2, "name must be text", id="name-not-text"),
        pytest.param("labs:\n  14749-6: {name: g, unit: mol/L, low: 1e-12, high: 1e-6}\n", 2,
                     "stored to 9 decimal places", id="range-too-fine"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0, high: 100, unit_factors: [10, 100]}", 2,
                     "unit_factors is `count`", id="bad-unit-factors"),
        pytest.param(LAB % "{name: x, unit: mg/L, low: 0, high: 1, unit_factors: count}", 2,
                     "count is for a cell count per volume", id="count-of-no-count"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0, high: 100, molar_mass: -1}", 2,
                     "molar_mass is a positive number", id="negative-molar-mass"),
        pytest.param(LAB % "{name: ANC, unit: 10*9/L, low: 0, high: 100, molar_mass: 180}", 2,
                     "not a mass concentration", id="molar-mass-of-no-mass"),
        pytest.param("frequencies:\n  every_5_days: -1\n", 2, "give its doses per day", id="negative-frequency"),
        pytest.param("frequencies:\n  every_5_days: often\n", 2, "give its doses per day", id="frequency-text"),
        pytest.param("frequencies:\n  every_5_days: {per_day: 1}\n", 2, "give its doses per day",
                     id="frequency-mapping"),
        pytest.param("frequencies:\n  astro: 1.0e308\n", 2, "is not a dosing interval", id="frequency-too-often"),
        pytest.param("frequencies:\n  tiny: 1e-9\n", 2, "is not a dosing interval", id="frequency-too-rare"),
    ],
)  # fmt: skip
def test_a_codes_file_problem_is_reported_at_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    (found,) = problems_of(codes_dir(tmp_path, text))
    assert f"codes.yaml:{line}:" in found and message in found


def test_two_directories_defining_a_code_differently_is_a_problem_at_the_second(
    tmp_path: Path, site: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "codes.yaml").write_text(CODES.replace("high: 100", "high: 50"))
    with pytest.raises(RuleError) as info:
        load_rules([site, other])
    (found,) = [str(p) for p in info.value.problems]
    assert str(other / "codes.yaml") in found and "also defined, differently, at" in found


def test_two_directories_defining_a_code_alike_load(tmp_path: Path, site: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "codes.yaml").write_text(CODES)
    assert "26499-4" in load_rules([site, other]).codebook.labs


def test_editing_codes_yaml_changes_the_rule_sets_digest(site: Path) -> None:
    before = load_rules([site]).digest
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 90"))
    assert load_rules([site]).digest != before


# ---- the store's register and ingest --------------------------------------------------------


def test_ingest_refuses_a_site_code_not_registered_and_says_how_to_register_it(store: Store) -> None:
    with pytest.raises(IngestError) as info:
        append_rows(store, [BIRTH, anc(800, "/uL")], author="t", source="s")
    assert "unknown LOINC code '26499-4'" in str(info.value.errors[0]) and "timeline codes add" in str(
        info.value.errors[0]
    )


def test_a_registered_labs_values_are_converted_to_its_unit(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(800, "/uL")], author="t", source="s")
    (row,) = [e for e in store.events("A") if e["kind"] == "lab"]
    assert (row["value"], row["unit"], row["orig_value"], row["orig_unit"]) == (0.8, "10*9/L", 800, "/uL")


def test_a_registered_labs_range_refuses_a_value_outside_it(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    with pytest.raises(IngestError) as info:
        append_rows(store, [BIRTH, anc(800, "10*9/L")], author="t", source="s")
    assert "neutrophils (absolute count)" in str(info.value.errors[0])


def test_registering_a_file_again_leaves_its_codes_unchanged(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    again = registry.register(store, site / "codes.yaml", "t")
    assert (again.added, again.changed, sorted(again.unchanged)) == (
        [],
        [],
        ["26499-4", "jadas10", "pericarditis"],
    )


def test_a_changed_range_is_registered_and_read_by_the_next_ingest(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 1000"))
    result = registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(800, "10*9/L")], author="t", source="s")
    assert result.changed == ["26499-4"] and registry.codebook(store).labs["26499-4"].high == 1000


def test_a_registered_codes_unit_cannot_change_and_the_store_is_left_as_it_was(
    store_path: Path, site: Path
) -> None:
    with Store.create(store_path) as s:
        registry.register(s, site / "codes.yaml", "t")
    before = snapshot(store_path)
    with raw_connection(store_path, read_only=True) as con:
        codes_before = con.execute("SELECT * FROM codes ORDER BY seq").fetchall()
    (site / "codes.yaml").write_text(
        CODES.replace("unit: 10*9/L", "unit: /uL").replace("high: 100", "high: 1e5")
    )
    with Store.open(store_path, write=True) as s, pytest.raises(RuleError) as info:
        registry.register(s, site / "codes.yaml", "t")
    assert "unit '10*9/L', not '/uL'" in str(info.value.problems[0])
    assert snapshot(store_path) == before
    with raw_connection(store_path, read_only=True) as con:
        assert con.execute("SELECT * FROM codes ORDER BY seq").fetchall() == codes_before


def test_rules_defining_a_registered_code_in_another_unit_are_refused_at_evaluation(
    store: Store, site: Path
) -> None:
    registry.register(store, site / "codes.yaml", "t")
    (site / "codes.yaml").write_text(
        CODES.replace("unit: 10*9/L", "unit: /uL").replace("high: 100", "high: 1e5")
    )
    (site / "anc_low.yaml").write_text(ANC_RULE.replace("unit: 10*9/L", "unit: /uL"))
    rules = load_rules([site])
    with pytest.raises(RuleError) as info:
        Session(store, rules)
    assert "codes.yaml:2" in str(info.value.problems[0]) and "registered in" in str(info.value.problems[0])


def test_the_engine_reads_a_registered_lab_through_a_site_rule(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(800, "/uL")], author="t", source="s")
    session = Session(store, load_rules([site]))
    replayed = session.state("A", "2020-01-10", ["anc_low"])[0]
    session.replay = False
    compiled = session.state("A", "2020-01-10", ["anc_low"])[0]
    assert (replayed.value, compiled.value) == (True, True)


def test_explain_describes_a_site_lab_by_its_name(store: Store, site: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(800, "/uL")], author="t", source="s")
    out = Session(store, load_rules([site])).explain("A", "anc_low", "2020-01-10")
    assert any("neutrophils (absolute count)" in e["description"] for e in out["events"])


# ---- the command line ------------------------------------------------------------------------


def test_codes_add_reports_what_it_added_as_json(store_path: Path, site: Path) -> None:
    run_cli("init", "--store", store_path)
    res = run_cli("codes", "add", site / "codes.yaml", "--author", "t", "--store", store_path, "--json")
    assert res.exit_code == 0 and sorted(json.loads(res.stdout)["added"]) == [
        "26499-4",
        "jadas10",
        "pericarditis",
    ]


def test_codes_add_of_a_bad_file_exits_8_naming_its_line(store_path: Path, tmp_path: Path) -> None:
    run_cli("init", "--store", store_path)
    bad = codes_dir(tmp_path, "labs:\n  26499-5: {name: ANC, unit: 10*9/L, low: 0, high: 100}\n")
    res = run_cli("codes", "add", bad / "codes.yaml", "--author", "t", "--store", store_path)
    assert res.exit_code == 8 and "codes.yaml:2:" in res.stderr


def test_codes_add_of_a_missing_file_exits_8_naming_it(store_path: Path, tmp_path: Path) -> None:
    run_cli("init", "--store", store_path)
    res = run_cli("codes", "add", tmp_path / "nope.yaml", "--author", "t", "--store", store_path)
    assert res.exit_code == 8 and "nope.yaml: does not exist" in res.stderr


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment-only"])
def test_an_empty_codes_file_in_a_rule_directory_is_a_problem_at_its_first_line(
    tmp_path: Path, text: str
) -> None:
    directory = codes_dir(tmp_path, text)
    res = run_cli("rules", "check", directory)
    assert res.exit_code == 8
    assert f"{directory / 'codes.yaml'}:1:1: empty codes file" in res.stderr


def test_codes_add_of_an_empty_file_exits_8_and_registers_nothing(store_path: Path, tmp_path: Path) -> None:
    run_cli("init", "--store", store_path)
    empty = codes_dir(tmp_path, "")
    res = run_cli("codes", "add", empty / "codes.yaml", "--author", "t", "--store", store_path)
    assert res.exit_code == 8 and "codes.yaml:1:1: empty codes file" in res.stderr
    assert (
        json.loads(run_cli("codes", "list", "--site", "--json", "--store", store_path).stdout)["codes"] == []
    )


def test_codes_list_site_lists_only_the_registered_codes(store_path: Path, site: Path) -> None:
    run_cli("init", "--store", store_path)
    run_cli("codes", "add", site / "codes.yaml", "--author", "t", "--store", store_path)
    res = run_cli("codes", "list", "--site", "--store", store_path, "--json")
    listed = json.loads(res.stdout)["codes"]
    assert sorted(c["code"] for c in listed) == ["26499-4", "jadas10", "pericarditis"]


def test_codes_list_includes_the_built_in_codes(store_path: Path) -> None:
    run_cli("init", "--store", store_path)
    listed = json.loads(run_cli("codes", "list", "--store", store_path, "--json").stdout)["codes"]
    assert {"2276-4", "fever", "29463-7"} <= {c["code"] for c in listed}


def test_timeline_events_describes_a_registered_lab_by_its_name(store_path: Path, site: Path) -> None:
    with Store.create(store_path) as s:
        registry.register(s, site / "codes.yaml", "t")
        append_rows(s, [BIRTH, anc(800, "/uL")], author="t", source="s")
    res = run_cli("events", "A", "--store", store_path)
    assert "neutrophils (absolute count)" in res.stdout


def test_codes_add_of_a_bad_file_says_it_is_the_codes_file_that_has_problems(
    store_path: Path, tmp_path: Path
) -> None:
    run_cli("init", "--store", store_path)
    bad = codes_dir(tmp_path, "labs:\n  26499-5: {name: ANC, unit: 10*9/L, low: 0, high: 100}\n")
    res = run_cli("codes", "add", bad / "codes.yaml", "--author", "t", "--store", store_path)
    assert "error: codes file has 1 problem" in res.stderr


# ---- the register's integrity ------------------------------------------------------------------


def registered_store(store_path: Path, site: Path) -> Path:
    with Store.create(store_path) as s:
        registry.register(s, site / "codes.yaml", "t")
    return store_path


def test_verify_counts_the_code_register_and_finds_it_intact(store_path: Path, site: Path) -> None:
    res = run_cli("verify", "--store", registered_store(store_path, site), "--json")
    out = json.loads(res.stdout)
    assert (res.exit_code, out["ok"], out["codes"]) == (0, True, 3)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        pytest.param(
            "UPDATE codes SET high = 1000 WHERE code = '26499-4'", "(26499-4) was altered", id="altered"
        ),
        pytest.param("DELETE FROM codes WHERE seq = 1", "does not link to the row before it", id="deleted"),
    ],
)
def test_verify_finds_a_register_row_changed_by_hand(
    store_path: Path, site: Path, tamper: str, message: str
) -> None:
    registered_store(store_path, site)
    with raw_connection(store_path) as con:
        con.execute(tamper)
    res = run_cli("verify", "--store", store_path)
    assert res.exit_code == 7 and message in res.stderr


def test_a_second_registration_extends_the_registers_chain(store_path: Path, site: Path) -> None:
    registered_store(store_path, site)
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 1000"))
    with Store.open(store_path, write=True) as s:
        registry.register(s, site / "codes.yaml", "t")
    out = json.loads(run_cli("verify", "--store", store_path, "--json").stdout)
    assert (out["ok"], out["codes"]) == (True, 4)


# ---- a site's dosing frequencies -------------------------------------------------------------

FREQ = "frequencies:\n  every_5_days: 0.2\n"
DOSED = [
    {"patient_id": "A", "kind": "weight", "occurred_at": "2020-01-01", "value": 20, "unit": "kg"},
    {"patient_id": "A", "kind": "medication_start", "drug": "anakinra", "dose": 100, "dose_unit": "mg",
     "frequency": "every_5_days", "occurred_at": "2020-01-02"},
]  # fmt: skip


def test_a_site_frequency_is_refused_at_ingest_until_registered(store: Store) -> None:
    with pytest.raises(IngestError) as info:
        append_rows(store, DOSED, author="t", source="s")
    assert "unknown frequency 'every_5_days'" in str(info.value.errors[0]) and "frequencies:" in str(
        info.value.errors[0]
    )


@pytest.mark.parametrize("replay", [True, False], ids=["replay", "sql"])
def test_a_registered_site_frequency_gives_the_daily_dose(store: Store, tmp_path: Path, replay: bool) -> None:
    d = codes_dir(tmp_path, FREQ)
    registry.register(store, d / "codes.yaml", "t")
    append_rows(store, DOSED, author="t", source="s")
    session = Session(store, load_rules([*rule_dirs(), d]))
    session.replay = replay
    (result,) = session.state("A", "2020-01-10", ["anakinra_dose_mg_kg_day"])
    assert result.value == pytest.approx(1.0)  # 100 mg x 0.2 a day / 20 kg


def test_a_registered_frequency_cannot_change_its_doses_per_day(store: Store, tmp_path: Path) -> None:
    d = codes_dir(tmp_path, FREQ)
    registry.register(store, d / "codes.yaml", "t")
    (d / "codes.yaml").write_text("frequencies:\n  every_5_days: 0.25\n")
    with pytest.raises(RuleError) as info:
        registry.register(store, d / "codes.yaml", "t")
    assert "'every_5_days' is registered" in str(
        info.value.problems[0]
    ) and "0.2 doses a day, not 0.25" in str(info.value.problems[0])


# ---- what the audit of the codes file found ---------------------------------------------------


def test_codes_add_refuses_one_code_in_two_sections(store: Store, tmp_path: Path) -> None:
    text = 'assessments:\n  foo: {name: x, unit: "{score}", low: 0, high: 4}\nfindings:\n  foo: foo thing\n'
    with pytest.raises(RuleError):
        registry.register(store, codes_dir(tmp_path, text) / "codes.yaml", "t")
    assert registry.registered(store) == []


def test_count_factors_follow_the_codes_unit(store: Store, tmp_path: Path) -> None:
    d = codes_dir(
        tmp_path, "labs:\n  26499-4: {name: ANC, unit: /uL, low: 0, high: 100000, unit_factors: count}\n"
    )
    registry.register(store, d / "codes.yaml", "t")
    with pytest.raises(IngestError) as info:
        append_rows(store, [BIRTH, anc(900, "/L")], author="t", source="s")
    assert "field unit" in str(info.value.errors[0])


def test_a_molar_mass_mismatch_with_the_store_is_named(store: Store, tmp_path: Path) -> None:
    lab = "labs:\n  2345-7: {name: glucose, unit: mg/dL, low: 0, high: 2000, molar_mass: %s}\n"
    d = codes_dir(tmp_path, lab % "180.16")
    registry.register(store, d / "codes.yaml", "t")
    (d / "codes.yaml").write_text(lab % "100")
    with pytest.raises(RuleError) as info:
        Session(store, load_rules([d]))
    assert "molar mass 180.16 g/mol" in str(info.value.problems[0]) and "molar mass 100 g/mol" in str(
        info.value.problems[0]
    )


def test_codes_add_of_a_device_says_it_is_not_a_regular_file(store_path: Path) -> None:
    run_cli("init", "--store", store_path)
    res = run_cli("codes", "add", "/dev/null", "--author", "t", "--store", store_path)
    assert res.exit_code == 8 and "/dev/null: is not a regular file" in res.stderr


def test_a_store_whose_code_register_lost_a_column_is_reported_damaged(store_path: Path, site: Path) -> None:
    registered_store(store_path, site)
    with raw_connection(store_path) as con:
        con.execute("ALTER TABLE codes DROP COLUMN per_day")
    res = run_cli("codes", "list", "--store", store_path)
    assert res.exit_code == 3 and "table codes's column per_day is missing" in res.stderr


# ---- what the second audit found ------------------------------------------------------------


@pytest.mark.parametrize("replay", [True, False], ids=["replay", "sql"])
def test_a_frequency_only_the_store_registered_gives_the_daily_dose(
    store: Store, tmp_path: Path, replay: bool
) -> None:
    registry.register(store, codes_dir(tmp_path, FREQ) / "codes.yaml", "t")
    append_rows(store, DOSED, author="t", source="s")
    session = Session(store, load_rules())  # the built-in pack alone: no codes.yaml
    session.replay = replay
    (result,) = session.state("A", "2020-01-10", ["anakinra_dose_mg_kg_day"])
    assert result.value == pytest.approx(1.0)


def test_verify_finds_events_naming_a_code_whose_register_rows_were_deleted(
    store_path: Path, site: Path
) -> None:
    with Store.create(store_path) as s:
        registry.register(s, site / "codes.yaml", "t")
        append_rows(s, [BIRTH, anc(800, "/uL")], author="t", source="s")
    with raw_connection(store_path) as con:
        con.execute("DROP TABLE codes")
    res = run_cli("verify", "--store", store_path)
    assert (
        res.exit_code == 7 and "names lab code 26499-4, which the code register does not hold" in res.stderr
    )


def test_verify_finds_a_register_copied_from_another_store(
    store_path: Path, tmp_path: Path, site: Path
) -> None:
    other = registered_store(tmp_path / "other.duckdb", site)
    with Store.create(store_path) as s:
        registry.register(s, site / "codes.yaml", "t")
    with raw_connection(store_path) as con:
        con.execute("DELETE FROM codes")
        con.execute(f"INSERT INTO codes SELECT * FROM read_parquet('{_copy_out(other, tmp_path)}')")
    res = run_cli("verify", "--store", store_path)
    assert res.exit_code == 7 and "does not link to the row before it" in res.stderr


def _copy_out(store_path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "codes.parquet"
    with raw_connection(store_path, read_only=True) as con:
        con.execute(f"COPY codes TO '{out}' (FORMAT parquet)")
    return out


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("ALTER TABLE codes ALTER per_day TYPE VARCHAR", id="column-type"),
        pytest.param(
            "ALTER TABLE codes RENAME TO codes2; CREATE VIEW codes AS SELECT * FROM codes2", id="view"
        ),
    ],
)
def test_a_register_that_is_not_the_table_timeline_made_is_a_damaged_store(
    store_path: Path, site: Path, damage: str
) -> None:
    registered_store(store_path, site)
    with raw_connection(store_path) as con:
        con.execute(damage)
    res = run_cli("codes", "add", site / "codes.yaml", "--author", "t", "--store", store_path)
    assert res.exit_code == 3 and "is damaged: its register of codes" in res.stderr


def test_a_cached_rule_set_records_the_directories_it_is_read_from_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two study folders alike: the second load of ``site`` (relative) is a cache hit."""
    from timeline.language.cache import load_rules as cached

    for folder in ("x", "y"):
        (tmp_path / folder / "site").mkdir(parents=True)
        (tmp_path / folder / "site" / "codes.yaml").write_text(CODES)
    monkeypatch.chdir(tmp_path / "x")
    cached(["site"])
    monkeypatch.chdir(tmp_path / "y")
    assert cached(["site"]).directories == [str((tmp_path / "y" / "site").resolve())]


def test_a_codes_file_unit_written_another_way_names_its_ucum_spelling(tmp_path: Path) -> None:
    directory = codes_dir(tmp_path, "labs:\n  26499-4: {name: ANC, unit: mcg/mL, low: 0, high: 100}\n")
    res = run_cli("rules", "check", directory)
    assert res.exit_code == 8 and "UCUM writes it 'ug/mL'" in res.stderr


# ---- the MEDS export carries the register -------------------------------------------------------

SITE_EVENTS = [BIRTH, anc(800, "/uL"), *DOSED]


@pytest.fixture
def site_export(store: Store, site: Path, tmp_path: Path) -> Path:
    """A MEDS export of a store holding events of registered site codes (a lab, a frequency)."""
    registry.register(store, site / "codes.yaml", "Dr. Ruiz")
    registry.register(store, codes_dir(tmp_path, FREQ) / "codes.yaml", "Dr. Ruiz")
    append_rows(store, SITE_EVENTS, author="t", source="s")
    export_meds(store, tmp_path / "out")
    return tmp_path / "out"


def _line_of(export: Path, text: str) -> int:
    """The line of the export's site_codes.yaml that holds ``text``, from 1."""
    lines = (export / "metadata/site_codes.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if text in line)


def register_changed(target: Store, tmp_path: Path, text: str) -> None:
    """Register ``text`` (CODES changed) in ``target`` from a codes.yaml of its own."""
    registry.register(target, codes_dir(tmp_path, text) / "codes.yaml", "t")


def other_store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "copy.duckdb")


def test_a_meds_export_of_site_codes_ingests_into_a_new_store_without_codes_add(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    with other_store(tmp_path) as target:
        result = ingest_file(target, site_export, author="t")
        assert (result.added, sorted(result.codes_registered)) == (
            len(SITE_EVENTS),
            ["26499-4", "every_5_days", "jadas10", "pericarditis"],
        )


def test_a_meds_export_of_a_store_with_site_codes_but_no_events_registers_the_codes(
    store: Store, site: Path, tmp_path: Path
) -> None:
    registry.register(store, site / "codes.yaml", "Dr. Ruiz")
    export_meds(store, tmp_path / "out")
    with other_store(tmp_path) as target:
        result = ingest_file(target, tmp_path / "out", author="t")
        assert (result.added, sorted(result.codes_registered)) == (0, ["26499-4", "jadas10", "pericarditis"])


def test_the_round_tripped_store_holds_the_sources_code_definitions(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    with other_store(tmp_path) as target:
        ingest_file(target, site_export, author="t")
        got = {sc.code.code: sc for sc in registry.site_codes(target)}
    want = registry.site_codes(store)
    assert all(got[sc.code.code].same_definition(sc) for sc in want) and len(got) == len(want)


def test_the_round_tripped_events_are_converted_as_in_the_source(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    with other_store(tmp_path) as target:
        ingest_file(target, site_export, author="t")
        (lab,) = [e for e in target.events("A") if e["kind"] == "lab"]
    assert (lab["value"], lab["unit"]) == (0.8, "10*9/L")


def test_the_exported_site_codes_file_is_a_codes_file_codes_add_reads(
    store_path: Path, site_export: Path, tmp_path: Path
) -> None:
    Store.create(tmp_path / "copy.duckdb").close()
    res = run_cli("codes", "add", site_export / "metadata/site_codes.yaml", "--store", tmp_path / "copy.duckdb",
                  "--author", "t", "--json")  # fmt: skip
    assert res.exit_code == 0 and sorted(json.loads(res.stdout)["added"]) == [
        "26499-4",
        "every_5_days",
        "jadas10",
        "pericarditis",
    ]


def test_the_exported_site_codes_file_names_who_registered_each_code_and_from_where(
    site_export: Path,
) -> None:
    text = (site_export / "metadata/site_codes.yaml").read_text()
    assert "by Dr. Ruiz from " in text and "site/codes.yaml:2" in text


def test_an_export_of_a_store_without_site_codes_has_no_site_codes_file(store: Store, tmp_path: Path) -> None:
    append_rows(store, [BIRTH], author="t", source="s")
    export_meds(store, tmp_path / "out")
    meta = json.loads((tmp_path / "out/metadata/dataset.json").read_text())
    assert not (tmp_path / "out/metadata/site_codes.yaml").exists() and meta["timeline"]["site_codes"] is None


def test_an_export_as_known_at_carries_the_register_as_it_stood_then(
    store: Store, site: Path, tmp_path: Path
) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(800, "/uL")], author="t", source="s")
    then = store.next_recorded_at()
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 1000"))
    registry.register(store, site / "codes.yaml", "t")
    export_meds(store, tmp_path / "out", as_known_at=then)
    (lab,) = [sc for sc in registry.read_file(tmp_path / "out/metadata/site_codes.yaml") if sc.kind == "lab"]
    assert lab.code.high == 100


def test_ingesting_an_export_into_its_own_store_registers_nothing(store: Store, site_export: Path) -> None:
    result = ingest_file(store, site_export, author="t")
    assert (result.added, result.codes_registered) == (0, [])


def _into_a_store_defining_the_lab_wider(tmp_path: Path, export: Path) -> tuple[IngestResult, float | None]:
    """Ingest ``export`` into a new store that registered the lab up to 1000 (the export: 100);
    the result and the new store's high end for the lab afterwards."""
    with other_store(tmp_path) as target:
        register_changed(target, tmp_path, CODES.replace("high: 100", "high: 1000"))
        result = ingest_file(target, export, author="t")
        return result, registry.codebook(target).labs["26499-4"].high


def test_ingest_keeps_the_stores_own_definition_of_a_code_it_holds(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    result, high = _into_a_store_defining_the_lab_wider(tmp_path, site_export)
    assert "26499-4" not in result.codes_registered and high == 1000


def test_ingest_says_which_codes_it_kept_in_the_stores_own_definition(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    result, _ = _into_a_store_defining_the_lab_wider(tmp_path, site_export)
    assert result.codes_kept == ["26499-4"] and result.message().endswith(
        "; 1 site code kept as this store defines it (26499-4)"
    )


def test_ingest_refuses_a_dataset_whose_code_the_store_holds_in_another_unit_naming_the_line(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    with other_store(tmp_path) as target:
        register_changed(
            target, tmp_path, CODES.replace("unit: 10*9/L", "unit: /uL").replace("high: 100", "high: 100000")
        )
        with pytest.raises(IngestError) as info:
            ingest_file(target, site_export, author="t")
    error = str(info.value.errors[0])
    line = _line_of(site_export, '"26499-4":')
    assert f"metadata/site_codes.yaml line {line}" in error and "unit '/uL', not '10*9/L'" in error


def test_a_refused_meds_ingest_registers_none_of_the_datasets_codes(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    # the target's own narrower range refuses the lab event; the frequency it lacks stays unregistered
    with other_store(tmp_path) as target:
        register_changed(target, tmp_path, CODES.replace("high: 100", "high: 0.5"))
        with pytest.raises(IngestError):
            ingest_file(target, site_export, author="t")
        assert ("every_5_days" not in registry.codebook(target).frequencies, target.info().events) == (
            True,
            0,
        )


def test_a_hand_edited_site_codes_file_is_refused_naming_its_line(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    path = site_export / "metadata/site_codes.yaml"
    path.write_text(path.read_text().replace('unit: "10*9/L"', 'unit: "10*9/lb"'))
    with other_store(tmp_path) as target, pytest.raises(IngestError) as info:
        ingest_file(target, site_export, author="t")
    error = str(info.value.errors[0])
    assert f"metadata/site_codes.yaml line {_line_of(site_export, '10*9/lb')}" in error and "10*9/lb" in error


def test_cli_ingest_of_an_export_reports_the_codes_it_registered(site_export: Path, tmp_path: Path) -> None:
    Store.create(tmp_path / "copy.duckdb").close()
    res = run_cli("ingest", site_export, "--store", tmp_path / "copy.duckdb", "--author", "t", "--json")
    (batch,) = json.loads(res.stdout)["batches"]
    assert res.exit_code == 0 and sorted(batch["codes_registered"]) == [
        "26499-4",
        "every_5_days",
        "jadas10",
        "pericarditis",
    ]


def test_verify_finds_the_register_a_meds_ingest_made_intact(site_export: Path, tmp_path: Path) -> None:
    Store.create(tmp_path / "copy.duckdb").close()
    run_cli("ingest", site_export, "--store", tmp_path / "copy.duckdb", "--author", "t")
    out = json.loads(run_cli("verify", "--store", tmp_path / "copy.duckdb", "--json").stdout)
    assert (out["ok"], out["codes"]) == (True, 4)


_NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and s.strip()
)
_BOUND = st.floats(min_value=0.001, max_value=1e9, allow_nan=False)


@given(
    name=_NAMES,
    bounds=st.tuples(st.just(0.0) | st.floats(min_value=1e-6, max_value=1e6), _BOUND).filter(
        lambda b: b[0] <= b[1]
    ),
    factors=st.tuples(st.floats(min_value=1e-9, max_value=1.0), st.floats(min_value=1.0, max_value=1e9)),
    molar=st.none() | st.floats(min_value=0.01, max_value=1e6),
    per_day=st.sampled_from([0.0, 0.2, 1 / 7, 1 / 28, 3.0]),
)
def test_a_registered_definition_written_as_a_codes_file_reads_back_the_same(
    name: str, bounds: tuple[float, float], factors: tuple[float, float], molar: float | None, per_day: float
) -> None:
    common = {
        "recorded_at": "2026-01-01T00:00:00",
        "author": "a\nb #",
        "source_file": "x.yaml",
        "source_line": 1,
    }
    lab = {"kind": "lab", "code": "26499-4", "name": name, "unit": "mg/L", "low": bounds[0], "high": bounds[1],
           "molar_mass": molar, "factor_low": factors[0], "factor_high": factors[1], "per_day": None, **common}  # fmt: skip
    freq = {**lab, "kind": "frequency", "code": "every_x", "name": "", "per_day": per_day}
    finding = {**lab, "kind": "finding", "code": "pericarditis", "name": name}
    text = registry.codes_yaml([lab, freq, finding], "heading\nsecond line")
    from timeline.language.loader import _Doc
    from timeline.language.sitecodes import read

    problems: list[Any] = []
    found = {sc.code.code: sc for sc in read(_Doc("f.yaml", text, problems))}
    assert not problems
    got = found["26499-4"].code
    assert (got.name, got.low, got.high, got.unit_factors, got.molar_mass) == (
        name, bounds[0], bounds[1], factors, molar,
    ) and (found["every_x"].per_day, found["pericarditis"].code.name) == (per_day, name)  # fmt: skip


def test_a_code_whose_range_was_narrowed_after_its_values_round_trips_with_its_widest_range(
    store: Store, site: Path, tmp_path: Path
) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH, anc(50, "10*9/L")], author="t", source="s")
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 20"))
    registry.register(store, site / "codes.yaml", "t")
    export_meds(store, tmp_path / "out")
    with other_store(tmp_path) as target:
        result = ingest_file(target, tmp_path / "out", author="t")
        assert (result.added, registry.codebook(target).labs["26499-4"].high) == (2, 100)


def test_the_exported_file_says_when_a_codes_range_is_wider_than_its_current_one(
    store: Store, site: Path, tmp_path: Path
) -> None:
    registry.register(store, site / "codes.yaml", "t")
    (site / "codes.yaml").write_text(CODES.replace("high: 100", "high: 20"))
    registry.register(store, site / "codes.yaml", "t")
    export_meds(store, tmp_path / "out")
    assert (
        "# now 0.0–20.0, unit factors [1e-06, 10000.0]: widest given here"
        in (tmp_path / "out/metadata/site_codes.yaml").read_text()
    )


def test_the_export_message_says_it_wrote_the_site_codes(store: Store, site: Path, tmp_path: Path) -> None:
    registry.register(store, site / "codes.yaml", "t")
    append_rows(store, [BIRTH], author="t", source="s")
    assert (
        export_meds(store, tmp_path / "out").message().endswith("; 3 site codes in metadata/site_codes.yaml")
    )


def test_a_site_codes_path_that_is_a_directory_rejects_the_dataset_naming_it(
    store: Store, site_export: Path, tmp_path: Path
) -> None:
    (site_export / "metadata/site_codes.yaml").unlink()
    (site_export / "metadata/site_codes.yaml").mkdir()
    with other_store(tmp_path) as target, pytest.raises(IngestError) as info:
        ingest_file(target, site_export, author="t")
    assert "metadata/site_codes.yaml: is a directory" in str(info.value.errors[0])
