"""Rule files that do not load say exactly where and why (file:line:column, did-you-mean),
all at once; the `rules` commands report them with their exit codes; user directories
override built-in rules by id; parameters change thresholds; the JSON Schema accepts the
built-in pack."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.engine_support import write_rule
from tests.support import CliResult, readme_rule_passes, run_cli
from timeline.language.loader import BUILTIN_DIR, Problem, RuleError, load_rules
from timeline.language.schema import rule_schema

HEAD = "id: {id}\nversion: '1'\ndescription: a test rule\ncitation: the tests\n"


def rule_file(directory: Path, rule_id: str, body: str) -> Path:
    """A rule file whose lines after the 4-line header are ``body`` (line 5 onwards)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rule_id}.yaml"
    path.write_text(HEAD.format(id=rule_id) + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def problems(directory: Path) -> list[Problem]:
    with pytest.raises(RuleError) as caught:
        load_rules([directory])
    return caught.value.problems


def only(directory: Path) -> Problem:
    found = problems(directory)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def located(p: Problem, path: Path, line: int, message: str) -> None:
    """``p`` is ``path:line:column: message`` with a real column."""
    assert p.column >= 1
    assert str(p) == f"{path}:{line}:{p.column}: {message}"


# ---- one problem each -------------------------------------------------------------------------


def test_a_yaml_syntax_error_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "r", "define:\n  all: [true, false\n")
    p = only(tmp_path)
    assert (p.file, p.line) == (str(path), 7)
    assert p.message.startswith("YAML syntax error")
    assert str(p).startswith(f"{path}:7:")


def test_an_unknown_operator_suggests_the_closest_one(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "r", "define:\n  al: [true, false]\n")
    located(only(tmp_path), path, 6, "unknown operator 'al' (did you mean 'all'?)")


def test_an_unknown_rule_reference_suggests_the_closest_rule(tmp_path: Path) -> None:
    rule_file(tmp_path, "fever", "define: true\n")
    path = rule_file(tmp_path, "r", "define:\n  not: {rule: fevr}\n")
    located(only(tmp_path), path, 6, "unknown rule 'fevr' (did you mean 'fever'?)")


def test_an_unknown_event_selector_name_suggests_the_closest_name(tmp_path: Path) -> None:
    path = rule_file(
        tmp_path,
        "r",
        """
        events:
          fever_event: {kind: finding, code: fever}
        define:
          exists: {select: fevr_event, window: 7 days}
        """,
    )
    located(only(tmp_path), path, 8, "unknown event selector 'fevr_event' (did you mean 'fever_event'?)")


def test_an_unknown_code_suggests_the_closest_code(tmp_path: Path) -> None:
    path = rule_file(
        tmp_path, "r", "define:\n  exists: {select: {kind: lab, code: 1988-6}, window: 7 days}\n"
    )
    located(
        only(tmp_path),
        path,
        6,
        "unknown code '1988-6' (did you mean '1988-5', CRP?); "
        "a site's own codes are defined in a codes.yaml beside its rules (README: adding a code)",
    )


def test_an_unknown_kind_suggests_the_closest_kind(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "r", "define:\n  exists: {select: {kind: labs}, window: 7 days}\n")
    located(only(tmp_path), path, 6, "unknown kind 'labs' (did you mean 'lab'?)")


def test_a_cycle_between_two_rules_is_named(tmp_path: Path) -> None:
    rule_file(tmp_path, "a", "define:\n  not: {rule: b}\n")
    rule_file(tmp_path, "b", "define:\n  not: {rule: a}\n")
    p = only(tmp_path)
    assert p.message in ("rules form a cycle: a → b → a", "rules form a cycle: b → a → b")
    assert p.line == 6


def test_a_rule_that_uses_itself_is_a_cycle(tmp_path: Path) -> None:
    rule_file(tmp_path, "a", "define:\n  not: {rule: a}\n")
    assert only(tmp_path).message == "rules form a cycle: a → a"


def test_comparing_a_boolean_with_a_number_is_a_type_error(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "r", "define:\n  gt: [{on_drug: anakinra}, 5]\n")
    located(only(tmp_path), path, 6, "gt compares a boolean with a number [1]")


LATEST_CRP = "define:\n  latest: {select: {kind: lab, code: 1988-5}, within: 30 days}\n"


@pytest.mark.parametrize(
    ("unit", "define", "message"),
    [
        ("mg/furlong", LATEST_CRP, "unit 'mg/furlong' is not a UCUM unit: unknown unit symbol 'furlong'"),
        ("kg", LATEST_CRP, "rule declares unit 'kg' but its value is in 'mg/L'"),
        ("mg/dL", "define: true\n", "rule declares unit 'mg/dL' but its value is a boolean"),
    ],
    ids=["not UCUM", "another dimension", "a boolean"],
)
def test_a_declared_unit_the_value_cannot_take_is_one_problem_at_its_line(
    tmp_path: Path, unit: str, define: str, message: str
) -> None:
    path = rule_file(tmp_path, "r", f"unit: {unit}\n{define}")
    located(only(tmp_path), path, 5, message)


def test_ordering_booleans_is_a_type_error(tmp_path: Path) -> None:
    rule_file(tmp_path, "r", "define:\n  lt: [{on_drug: anakinra}, true]\n")
    assert only(tmp_path).message == "lt cannot order booleans"


def test_a_threshold_in_a_unit_that_does_not_convert_is_an_error(tmp_path: Path) -> None:
    path = rule_file(
        tmp_path,
        "r",
        'define:\n  gt: [{latest: {select: {kind: lab, code: 2276-4}, within: 7 days}}, "48 U/L"]\n',
    )
    located(only(tmp_path), path, 6, "units do not convert: U/L vs ng/mL")


def test_an_unknown_parameter_suggests_the_closest_parameter(tmp_path: Path) -> None:
    path = rule_file(
        tmp_path,
        "r",
        """
        params:
          threshold: {default: 38.0 Cel}
        define:
          ge: [{latest: {select: {kind: body_temperature}, within: 1 day}}, {param: thresold}]
        """,
    )
    located(only(tmp_path), path, 8, "unknown parameter 'thresold' (did you mean 'threshold'?)")


def test_an_unknown_window_key_suggests_the_closest_key(tmp_path: Path) -> None:
    rule_file(
        tmp_path, "r", "define:\n  exists: {select: {kind: finding}, window: {start: -7 days, ned: 0 days}}\n"
    )
    assert only(tmp_path).message == "unknown window key 'ned' (did you mean 'end'?)"


def test_a_rule_file_without_required_keys_names_them(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("id: r\ndefine: true\n", encoding="utf-8")
    messages = sorted(p.message for p in problems(tmp_path))
    assert messages == [
        "missing required key 'citation'",
        "missing required key 'description'",
        "missing required key 'version'",
    ]


# ---- all at once --------------------------------------------------------------------------------


def test_problems_in_several_files_are_reported_together(tmp_path: Path) -> None:
    a = rule_file(tmp_path, "a", "define:\n  al: [true]\n")
    b = rule_file(tmp_path, "b", "define:\n  gt: [true, 5]\n")
    c = rule_file(tmp_path, "c", "define:\n  exists: {select: {kind: labs}, window: 7 days}\n")
    found = problems(tmp_path)
    assert sorted(p.file for p in found) == sorted(str(x) for x in (a, b, c))


def test_a_reference_to_a_rule_whose_file_has_problems_is_not_also_unknown(tmp_path: Path) -> None:
    broken = rule_file(tmp_path, "a", "define:\n  al: [true]\n")
    rule_file(tmp_path, "b", "define:\n  not: {rule: a}\n")
    assert [p.file for p in problems(tmp_path)] == [str(broken)]


def test_type_errors_are_reported_beside_problems_in_other_files(tmp_path: Path) -> None:
    rule_file(tmp_path, "a", "define:\n  al: [true]\n")
    b = rule_file(
        tmp_path,
        "b",
        "define:\n  gt: [{latest: {select: {kind: lab, code: 2276-4}, within: 7 days}}, 48 U/L]\n",
    )
    found = problems(tmp_path)
    located(found[-1], b, 6, "units do not convert: U/L vs ng/mL")


def test_several_problems_in_one_file_are_reported_together(tmp_path: Path) -> None:
    rule_file(
        tmp_path,
        "r",
        """
        statuss: checked
        define:
          all:
            - al: [true]
            - exists: {select: {kind: labs}, window: 7 days}
        """,
    )
    assert len(problems(tmp_path)) == 3


# ---- the rules commands --------------------------------------------------------------------------


def test_rules_check_exits_8_and_prints_every_problem(tmp_path: Path) -> None:
    a = rule_file(tmp_path, "a_bad", "define:\n  al: [true]\n")
    b = rule_file(tmp_path, "b_bad", "define:\n  gt: [true, 5]\n")
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8
    assert "error: rule files have 2 problems" in result.stderr
    assert f"{a}:6:7: unknown operator 'al' (did you mean 'all'?)" in result.stderr
    assert f"{b}:6:7: gt compares a boolean with a number [1]" in result.stderr
    assert "Traceback" not in result.output


def test_rules_check_json_lists_the_problems(tmp_path: Path) -> None:
    rule_file(tmp_path, "a_bad", "define:\n  al: [true]\n")
    result = run_cli("rules", "check", tmp_path, "--json")
    assert result.exit_code == 8
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(p["line"], p["column"]) for p in data["problems"]] == [(6, 7)]


def test_rules_check_exits_0_on_valid_files(tmp_path: Path) -> None:
    rule_file(tmp_path, "mine", "define: true\n")
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")


def _example_rule(directory: Path, expected: str) -> None:
    write_rule(
        directory,
        "high_crp",
        {"gt": [{"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}, "6 mg/L"]},
        examples=[
            {
                "name": "0.61 mg/dL is above 6 mg/L",
                "events": [
                    {
                        "patient_id": "X",
                        "kind": "lab",
                        "code": "1988-5",
                        "occurred_at": "2009-03-01",
                        "value": 0.61,
                        "unit": "mg/dL",
                    }
                ],
                "expect": [{"at": "2009-03-01", "value": yaml.safe_load(expected)}],
            }
        ],
    )


def test_rules_test_exits_9_when_an_example_fails(tmp_path: Path) -> None:
    _example_rule(tmp_path, "false")
    result = run_cli("rules", "test", tmp_path, "--rule", "high_crp")
    assert result.exit_code == 9, result.output
    assert "FAIL high_crp@1: 0.61 mg/dL is above 6 mg/L" in result.stdout
    assert "at 2009-03-01: expected false, got true" in result.stdout
    assert "0 passed, 1 failed" in result.stdout


def test_rules_test_exits_0_when_every_example_passes(tmp_path: Path) -> None:
    _example_rule(tmp_path, "true")
    result = run_cli("rules", "test", tmp_path, "--rule", "high_crp")
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.stdout


HIGH_CRP = {"gt": [{"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}, "6 mg/L"]}


def _crp(value: float, **extra: object) -> dict[str, object]:
    return {"patient_id": "X", "kind": "lab", "code": "1988-5", "occurred_at": "2009-03-01", "value": value,
            "unit": "mg/L", **extra}  # fmt: skip


def _example(name: str, events: list[dict[str, object]], value: object, **extra: object) -> dict[str, object]:
    """An example whose one expectation is ``value`` on 2009-03-01."""
    return {"name": name, **extra, "events": events, "expect": [{"at": "2009-03-01", "value": value}]}


def _rules_test(directory: Path, *examples: dict[str, object], **rule: object) -> CliResult:
    write_rule(directory, "high_crp", rule.pop("define", HIGH_CRP), examples=list(examples), **rule)
    return run_cli("rules", "test", directory, "--rule", "high_crp")


def test_rules_test_keeps_each_examples_events_to_itself(tmp_path: Path) -> None:
    # examples run in one store: the second example's patient X must not see the first's CRP
    weight = {"patient_id": "X", "kind": "weight", "occurred_at": "2009-03-01", "value": 20, "unit": "kg"}
    unknown = _example("no CRP at all", [weight], "unknown")
    unknown["expect"] = [{"at": "2009-03-01", "value": "unknown", "reason_contains": "no CRP recorded"}]
    result = _rules_test(tmp_path, _example("a high CRP", [_crp(40)], True), unknown)
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.stdout


def test_rules_test_lets_two_examples_use_the_same_event_id(tmp_path: Path) -> None:
    result = _rules_test(
        tmp_path,
        _example("high", [_crp(40, event_id="e1")], True),
        _example("low", [_crp(2, event_id="e1")], False),
    )
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.stdout


BIRTH_2010 = {"patient_id": "X", "kind": "birth", "occurred_at": "2010-01-01", "sex": "female"}


def test_rules_test_reports_an_ingest_error_against_its_own_example(tmp_path: Path) -> None:
    result = _rules_test(
        tmp_path,
        _example("good", [_crp(40)], True),
        # a unit ingest refuses is refused by the check as the file is read (helper 67): an
        # event before the birth is refused by ingest alone
        _example("born after", [_crp(40), BIRTH_2010], True),
    )
    assert result.exit_code == 9, result.output
    assert "PASS high_crp@1: good" in result.stdout
    assert "FAIL high_crp@1: born after" in result.stdout
    assert "is before the patient's birth" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_rules_test_gives_each_example_its_own_parameters(tmp_path: Path) -> None:
    limit = {
        "gt": [
            {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
            {"param": "limit"},
        ]
    }
    result = _rules_test(
        tmp_path,
        _example("default limit", [_crp(8)], True),
        _example("limit 10", [_crp(8)], False, params={"limit": "10 mg/L"}),
        define=limit,
        params={"limit": {"default": "6 mg/L"}},
    )
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.stdout


# ---- overrides and parameters ----------------------------------------------------------------------

CRP_NORMAL = {
    "normal": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days", "upper": {"param": "upper"}}
}
CRP_PARAMS = {"upper": {"default": "6 mg/L"}}
# an override of the pack's crp_normal keeps the validity inflammatory_markers_normal gives it
CRP_OVERRIDE = {
    "normal": {
        "select": {"kind": "lab", "code": "1988-5"},
        "within": {"param": "validity"},
        "upper": {"param": "upper"},
    }
}
CRP_OVERRIDE_PARAMS = {"upper": {"default": "10 mg/L"}, "validity": {"default": "30 days"}}


def _store_with_crp(tmp_path: Path, value: float) -> Path:
    store = tmp_path / "store.duckdb"
    csv = tmp_path / "crp.csv"
    csv.write_text(f"patient_id,kind,occurred_at,code,value,unit\nX,lab,2009-03-01,1988-5,{value},mg/L\n")
    assert run_cli("init", "--store", store).exit_code == 0
    assert run_cli("ingest", csv, "--store", store, "--author", "tests").exit_code == 0
    return store


def test_a_user_rule_with_a_built_in_id_overrides_it_and_is_marked(tmp_path: Path) -> None:
    builtin = BUILTIN_DIR / "sjia" / "crp_normal.yaml"
    assert builtin.exists()
    mine = write_rule(tmp_path / "site", "crp_normal", CRP_OVERRIDE, params=CRP_OVERRIDE_PARAMS)
    result = run_cli("rules", "list", "--rules", tmp_path / "site", "--json")
    assert result.exit_code == 0, result.output
    listed = {r["id"]: r for r in json.loads(result.stdout)["rules"]}
    assert listed["crp_normal"]["source"] == str(mine)
    assert listed["crp_normal"]["overrides"] == str(builtin)
    assert all(r["overrides"] is None for rid, r in listed.items() if rid != "crp_normal")


def test_rules_check_names_each_rule_a_site_file_overrides(tmp_path: Path) -> None:
    """Helper 43: an override was silent in `rules check` (only '44 rules in 45 files')."""
    mine = write_rule(tmp_path / "site", "crp_normal", CRP_OVERRIDE, params=CRP_OVERRIDE_PARAMS)
    result = run_cli("rules", "check", tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert f"  crp_normal: {mine} overrides {BUILTIN_DIR / 'sjia' / 'crp_normal.yaml'}" in result.stdout
    listed = json.loads(run_cli("rules", "check", tmp_path / "site", "--json").stdout)
    assert listed["overrides"] == ["crp_normal"]


def test_an_override_of_crp_normal_without_the_validity_the_pack_passes_it_is_refused(tmp_path: Path) -> None:
    """inflammatory_markers_normal gives crp_normal its validity (clinical remission carries a
    CRP forward): an override without that parameter could not be read so, and says why."""
    mine = write_rule(tmp_path / "site", "crp_normal", CRP_NORMAL, params={"upper": {"default": "10 mg/L"}})
    result = run_cli("rules", "check", tmp_path / "site")
    assert result.exit_code == 8
    assert f"{mine}:1:5: crp_normal overrides " in result.stderr
    assert "without its parameter 'validity', which rules reading it give it" in result.stderr


def test_an_override_declaring_the_passed_validity_but_not_reading_it_is_refused(tmp_path: Path) -> None:
    """Helper 41: declared only to pass the check, the value given would change nothing."""
    write_rule(tmp_path / "site", "crp_normal", CRP_NORMAL, params=CRP_OVERRIDE_PARAMS)
    result = run_cli("rules", "check", tmp_path / "site")
    assert result.exit_code == 8
    assert (
        "parameter 'validity' is declared but the definition never reads it: a value given to it "
        "(params.yaml, --param, with: {validity: …}) would change nothing" in result.stderr
    )


def test_the_override_is_the_rule_that_is_evaluated(tmp_path: Path) -> None:
    store = _store_with_crp(tmp_path, 8)
    write_rule(tmp_path / "site", "crp_normal", CRP_OVERRIDE, params=CRP_OVERRIDE_PARAMS)
    args = ("state", "X", "--at", "2009-03-01", "--rule", "crp_normal", "--store", store, "--json")
    assert json.loads(run_cli(*args).stdout)["states"][0]["value"] is False
    data = json.loads(run_cli(*args, "--rules", tmp_path / "site").stdout)
    assert data["states"][0]["value"] is True
    assert data["manifest"]["overrides"] == {"crp_normal": str(tmp_path / "site" / "crp_normal.yaml")}


def test_the_manifest_records_the_parameter_values_a_run_was_given(tmp_path: Path) -> None:
    """Helper 40: a sensitivity run at another limit differed from the main one only by its digest."""
    store = _store_with_crp(tmp_path, 8)
    args = ("state", "X", "--at", "2009-03-01", "--rule", "crp_normal", "--store", store, "--json")
    plain = json.loads(run_cli(*args).stdout)["manifest"]["parameters"]
    given = json.loads(
        run_cli(*args, "--param", "crp_normal.upper=1 mg/dL", "--param", "crp_normal.validity=60 days").stdout
    )
    assert (plain, given["manifest"]["parameters"]) == (
        {},
        {"crp_normal": {"upper": "10 mg/L", "validity": "60 days"}},
    )


def test_a_param_option_changes_a_threshold(tmp_path: Path) -> None:
    store = _store_with_crp(tmp_path, 8)
    write_rule(tmp_path / "site", "my_crp", CRP_NORMAL, params=CRP_PARAMS)
    args = (
        "state",
        "X",
        "--at",
        "2009-03-01",
        "--rule",
        "my_crp",
        "--rules",
        tmp_path / "site",
        "--store",
        store,
    )
    assert json.loads(run_cli(*args, "--json").stdout)["states"][0]["value"] is False
    changed = run_cli(*args, "--param", "my_crp.upper=10 mg/L", "--json")
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["states"][0]["value"] is True


def test_a_params_file_changes_a_threshold_and_the_rules_digest(tmp_path: Path) -> None:
    store = _store_with_crp(tmp_path, 8)
    write_rule(tmp_path / "site", "my_crp", CRP_NORMAL, params=CRP_PARAMS)
    args = (
        "state",
        "X",
        "--at",
        "2009-03-01",
        "--rule",
        "my_crp",
        "--rules",
        tmp_path / "site",
        "--store",
        store,
        "--json",
    )
    before = json.loads(run_cli(*args).stdout)
    (tmp_path / "site" / "params.yaml").write_text("my_crp: {upper: 1 mg/dL}\n", encoding="utf-8")
    after = json.loads(run_cli(*args).stdout)
    assert (before["states"][0]["value"], after["states"][0]["value"]) == (False, True)
    assert before["manifest"]["rules_digest"] != after["manifest"]["rules_digest"]


def test_a_param_for_an_unknown_parameter_is_an_error(tmp_path: Path) -> None:
    write_rule(tmp_path / "site", "my_crp", CRP_NORMAL, params=CRP_PARAMS)
    with pytest.raises(RuleError) as caught:
        load_rules([tmp_path / "site"], params={"my_crp": {"uper": "10 mg/L"}})
    assert [p.message for p in caught.value.problems] == [
        "rule 'my_crp' has no parameter 'uper' (did you mean 'upper'?)"
    ]


@pytest.mark.parametrize(
    ("rule", "name", "value", "message"),
    [
        ("jadas10_inactive", "cutoff", "2 %", "jadas10_inactive.cutoff: '2 %' is not in {score}, the parameter's unit "
         "(its default is 1 {score}); give the number alone or in {score}"),
        ("crp_normal", "upper", "1e308 g/L", "crp_normal.upper: '1e308 g/L' in mg/L is too large a number"),
    ],
    ids=["a-score-in-percent", "an-infinite-limit"],
)  # fmt: skip
def test_a_site_value_its_parameter_cannot_take_is_refused(
    rule: str, name: str, value: str, message: str
) -> None:
    with pytest.raises(RuleError) as caught:
        load_rules(params={rule: {name: value}})
    assert [p.message for p in caught.value.problems] == [message]


def test_a_param_in_a_unit_that_does_not_convert_is_an_error(tmp_path: Path) -> None:
    write_rule(tmp_path / "site", "my_crp", CRP_NORMAL, params=CRP_PARAMS)
    result = run_cli(
        "rules", "show", "my_crp", "--rules", tmp_path / "site", "--param", "my_crp.upper=10 U/L"
    )
    assert result.exit_code == 2  # the value is on the command line, not in a file
    assert "my_crp.upper" in result.stderr
    assert "Traceback" not in result.output


# ---- the JSON Schema ---------------------------------------------------------------------------------


def test_rules_schema_prints_a_json_schema() -> None:
    result = run_cli("rules", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", sorted((BUILTIN_DIR / "sjia").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_schema_accepts_every_built_in_rule_file(path: Path) -> None:
    if path.stem == "params":
        pytest.skip("site parameters, not a rule")
    validator = jsonschema.Draft202012Validator(rule_schema())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


# ---- the built-in pack's own examples --------------------------------------------------------


@pytest.mark.parametrize("path", sorted((BUILTIN_DIR / "sjia").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_rule_carries_examples(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data.get("examples"), f"{path.name} has no examples"


def test_every_example_of_the_builtin_pack_passes() -> None:
    result = run_cli("rules", "test", "--json")
    assert result.exit_code == 0, result.stdout[-2000:]


@pytest.mark.parametrize(
    "select",
    [
        {"kind": "finding", "code": "uveitis", "present": True},
        {"any_of": [{"kind": "finding", "code": "uveitis", "present": True}]},
    ],
)
def test_finding_present_refuses_a_selector_that_gives_present(tmp_path: Path, select: object) -> None:
    write_rule(tmp_path, "r", {"finding_present": {"select": select, "within": "90 days"}})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    (problem,) = info.value.problems
    assert "its selector gives no present" in problem.message
    assert problem.line > 0


@pytest.mark.parametrize(
    ("spans", "fn", "message"),
    [
        (True, "max", "spans applies to exists and count, not to max"),
        ("yes", "exists", "spans is true or false, not 'yes'"),
    ],
)
def test_spans_is_a_boolean_of_exists_and_count(tmp_path: Path, spans: object, fn: str, message: str) -> None:
    agg = {"select": {"kind": "finding", "code": "uveitis"}, "window": "90 days", "spans": spans}
    if fn == "max":
        agg["field"] = "value"
    write_rule(tmp_path, "r", {fn: agg})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any(message in p.message for p in info.value.problems)


def test_whole_day_of_an_at_anchor_is_a_boolean(tmp_path: Path) -> None:
    expr = {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}
    anchor = {"first": {"kind": "medication_start", "drug": "anakinra"}}
    write_rule(tmp_path, "r", {"at_anchor": {"expr": expr, "anchor": anchor, "whole_day": "yes"}})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any("whole_day is true or false, not 'yes'" in p.message for p in info.value.problems)


def test_a_window_that_is_neither_a_duration_nor_ever_names_both_forms(tmp_path: Path) -> None:
    write_rule(
        tmp_path, "r", {"exists": {"select": {"kind": "finding", "code": "fever"}, "window": ["ever"]}}
    )
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any("a window is a duration ('7 days'), ever, or {start" in p.message for p in info.value.problems)


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            ["topicl"],
            "unknown route 'topicl' (did you mean 'topical'?); routes are sc, iv, oral, im, topical, other",
        ),
        (["eye"], "unknown route 'eye'; routes are"),
    ],
)
def test_on_drug_except_routes_are_known_routes(tmp_path: Path, routes: list[str], message: str) -> None:
    write_rule(tmp_path, "r", {"on_drug": {"drugs": ["prednisolone"], "except_routes": routes}})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any(message in p.message for p in info.value.problems)


def test_the_engine_reads_the_route_column_only_when_a_rule_uses_it(tmp_path: Path) -> None:
    from timeline.engine.compiler import ENGINE_COLUMNS, engine_columns

    write_rule(tmp_path, "plain", {"on_drug": "prednisolone"})
    assert engine_columns(load_rules([tmp_path])) == ENGINE_COLUMNS
    write_rule(tmp_path, "systemic", {"on_drug": {"drugs": "prednisolone", "except_routes": ["topical"]}})
    assert engine_columns(load_rules([tmp_path])) == (*ENGINE_COLUMNS, "route")


def test_a_misspelt_ever_window_suggests_ever(tmp_path: Path) -> None:
    write_rule(tmp_path, "r", {"exists": {"select": {"kind": "finding", "code": "fever"}, "window": "evr"}})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any(
        "'evr' is not a duration or ever (did you mean 'ever'?)" in p.message for p in info.value.problems
    )


def test_a_product_that_multiplies_back_a_unit_it_divides_by_cancels_it(tmp_path: Path) -> None:
    """A daily dose in mg/kg/d times the days on the drug is mg/kg, not "(mg/kg/d).(d)"."""
    write_rule(
        tmp_path,
        "cumulative",
        {
            "mul": [
                {"daily_dose": {"drug": "anakinra"}},
                {"time_since": {"first": {"kind": "medication_start", "drug": "anakinra"}, "unit": "days"}},
            ]
        },
    )
    rules = load_rules([tmp_path])
    assert str(rules.rules["cumulative"].type) == "number [mg/kg]"


def test_a_product_with_a_plain_number_keeps_the_other_factors_unit(tmp_path: Path) -> None:
    # ms_score's terms: 2.44 × a 0/1 count read "(1).(1)" in `rules list`
    write_rule(tmp_path, "count", {"mul": [2.44, {"count_true": [True]}]})
    write_rule(
        tmp_path,
        "crp",
        {"mul": [2, {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}]},
    )
    rules = load_rules([tmp_path])
    assert (str(rules.rules["count"].type), str(rules.rules["crp"].type)) == ("number [1]", "number [mg/L]")


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (
            {"exists": {"select": {"kind": "finding", "code": "fever"},
                        "window": {"start": "-7 days", "end": "0 days", "start_inclusive": "no"}}},
            "start_inclusive is true or false, not 'no'",
        ),
        ({"daily_dose": {"drug": "anakinra", "per_kg": "yes"}}, "per_kg is true or false, not 'yes'"),
    ],
)  # fmt: skip
def test_a_true_or_false_option_rejects_other_values(tmp_path: Path, define: object, message: str) -> None:
    # bool("no") is True: the window's start was silently inclusive
    write_rule(tmp_path, "r", define)
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert any(message in p.message for p in info.value.problems)


def test_rules_list_gives_a_number_in_the_unit_its_rule_declares() -> None:
    # ms_score computes a dimensionless sum and declares {score}
    result = run_cli("rules", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = {r["id"]: r["type"] for r in json.loads(result.stdout)["rules"]}
    assert listed["ms_score"] == "number [{score}]"


def test_the_readmes_example_rule_file_loads_and_its_examples_pass(tmp_path: Path) -> None:
    result = readme_rule_passes(tmp_path, r"A rule file:\n\n", "crp_normal")
    assert result.exit_code == 0, result.output


def test_a_missing_rule_directory_is_named_without_a_line_and_column(tmp_path: Path) -> None:
    result = run_cli("rules", "check", "--rules", tmp_path / "nodir")
    assert result.exit_code == 8
    assert f"  {tmp_path / 'nodir'}: rule directory does not exist" in result.stderr.splitlines()


def test_a_rule_file_whose_aliases_expand_past_the_limit_is_one_problem(tmp_path: Path) -> None:
    lines = ["id: r", 'version: "1"', "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "r.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert [p.message for p in info.value.problems] == [
        "more than 100,000 values once its aliases (*name) are expanded; not read"
    ]


PLAIN = 'id: r\nversion: "1"\ndescription: d\ncitation: c\n'


def check_problems(directory: Path) -> list[str]:
    result = run_cli("rules", "check", "--rules", directory)
    assert result.exit_code == 8, result.output
    return [line.strip() for line in result.stderr.splitlines()[1:]]


def problems_of(tmp_path: Path, body: str) -> list[str]:
    """The problems ``rules check`` finds in one rule file: PLAIN's header, then ``body``."""
    (tmp_path / "r.yaml").write_text(PLAIN + body, encoding="utf-8")
    return check_problems(tmp_path)


def test_a_rule_file_that_is_not_utf8_is_named_at_its_byte(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_bytes(
        PLAIN.replace("description: d", "description: caf\xe9").encode("latin-1")
    )
    assert check_problems(tmp_path) == [
        f"{tmp_path / 'r.yaml'}:3:17: not UTF-8 (byte 0xe9): save the file as UTF-8"
    ]


def test_a_directory_named_like_a_rule_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").mkdir()
    assert check_problems(tmp_path) == [f"{tmp_path / 'x.yaml'}: cannot read it: Is a directory"]


def test_a_dangling_link_named_like_a_rule_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "zz.yaml").symlink_to(tmp_path / "gone.yaml")
    assert check_problems(tmp_path) == [f"{tmp_path / 'zz.yaml'}: cannot read it: No such file or directory"]


def test_an_alias_inside_itself_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "define: &x {not: *x}\n") == [
        f"{tmp_path / 'r.yaml'}:1:1: a YAML alias (*name) contains itself, or the file is nested too deeply"
    ]


def test_a_definition_nested_too_deeply_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    expr = "{lt: [1, 2]}"
    for _ in range(400):
        expr = "{not: " + expr + "}"
    [problem] = problems_of(tmp_path, f"define: {expr}\n")
    assert problem.endswith(": nested more than 150 levels deep")


def test_an_operator_with_too_many_items_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    items = ", ".join(["{lt: [1, 2]}"] * 1000)
    assert problems_of(tmp_path, f"define: {{any: [{items}]}}\n") == [
        f"{tmp_path / 'r.yaml'}:5:15: any takes at most 250 expressions, not 1000"
    ]


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (
            "{held_for: {expr: {lt: [1, 2]}, duration: -5 days}}",
            "duration is a length: it cannot be negative (-5 days)",
        ),
        (
            "{latest: {select: {kind: weight}, within: -30 days}}",
            "within is a length: it cannot be negative (-30 days)",
        ),
        (
            "{exists: {select: {kind: weight}, window: -5 days}}",
            "a window of -5 days is empty: give a positive duration",
        ),
        (
            "{exists: {select: {kind: weight}, window: 0 days}}",
            "a window of 0 days is empty: give a positive duration",
        ),
        (
            "{exists: {select: {kind: weight}, window: {start: 0 days, end: -90 days}}}",
            "the window starts (0 days) after it ends (-90 days)",
        ),
        (
            "{in_episode: {select: {kind: mas_episode}, merge_gap: -5 days}}",
            "merge_gap is a length: it cannot be negative (-5 days)",
        ),
        ("{on_drug: []}", "on_drug names one drug or a list of drugs"),
    ],
    ids=["held_for", "within", "window", "zero-window", "reversed-window", "merge_gap", "on_drug-empty"],
)
def test_a_duration_or_window_that_makes_no_sense_is_a_problem(
    tmp_path: Path, define: str, message: str
) -> None:
    [problem] = problems_of(tmp_path, f"define: {define}\n")
    assert message in problem


@pytest.mark.parametrize(
    ("define", "message"),
    [
        ("{clip: {value: 5, low: 1 kg}}", "clip's low is a plain number, in the value's unit: not '1 kg'"),
        ("{clip: {value: 5, low: 10, high: 1}}", "clip's low (10) is above its high (1)"),
    ],
    ids=["unit", "low-above-high"],
)
def test_a_clip_bound_that_makes_no_sense_is_a_problem(tmp_path: Path, define: str, message: str) -> None:
    [problem] = problems_of(tmp_path, f"define: {define}\n")
    assert problem.endswith(message)


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ("{at: '2009-13-01', value: true}", "at '2009-13-01' is not a date (YYYY-MM-DD) or date-time"),
        ("{at: '2009-02-01T10:00+02:00', value: true}", "give clinical times without an offset"),
        ("{at: '20090201', value: true}", "at '20090201' is not a date (YYYY-MM-DD) or date-time"),
        ("{at: '1899-02-01', value: true}", "at '1899-02-01' is out of range: give a date from 1900-01-01"),
        ("{at: '9999-02-01', value: true}", "at '9999-02-01' is out of range: give a date from 1900-01-01"),
        ("{at: 2009-02-01, value: true, reason_contains: 42}", "reason_contains is text, not 42"),
        ("{at: 2009-02-01, value: true, patient_id: 5}", "patient_id is text, not 5"),
        ("{at: 2009-02-01, valeu: true}", "unknown key 'valeu' for an expectation (did you mean 'value'?)"),
    ],
    ids=[
        "bad-date",
        "offset",
        "compact-date",
        "before-1900",
        "after-8999",
        "reason-number",
        "patient-number",
        "misspelt-value",
    ],
)
def test_a_malformed_expectation_is_a_problem_at_its_place(
    tmp_path: Path, expectation: str, message: str
) -> None:
    [problem] = problems_of(
        tmp_path,
        f"define: {{lt: [1, 2]}}\nexamples:\n  - name: e\n    events: []\n    expect: [{expectation}]\n",
    )
    assert message in problem


def test_a_date_yaml_cannot_read_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        "define: {lt: [1, 2]}\nexamples:\n  - {name: e, events: [], expect: [{at: 2009-13-01, value: true}]}\n",
    )
    assert f"{tmp_path / 'r.yaml'}:7:41: '2009-13-01' is not a valid date: month must be in 1..12" in problems


def test_example_params_that_are_not_a_mapping_are_a_problem(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "define: {lt: [1, 2]}\nexamples:\n  - {name: e, events: [], expect: [], params: [1]}\n"
    )
    assert problem.endswith("an example's params map a parameter name to its value")


def test_latest_of_labs_beside_weights_has_no_single_unit(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "define: {latest: {select: {kind: [lab, weight]}, within: 300 days}}\n")
    assert problem.endswith("the events selected by 'lab or weight' have no single unit: select one code")


def test_a_python_tag_on_a_collection_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        PLAIN.replace("description: d", 'description: !!python/object/apply:os.system ["echo pwned"]')
        + "define: {lt: [1, 2]}\n",
        encoding="utf-8",
    )
    [problem] = check_problems(tmp_path)
    assert problem.endswith("YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed")


def test_an_unknown_key_in_a_parameter_is_a_problem_with_a_suggestion(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "params:\n  upper: {default: 6 mg/L, descripton: typo}\ndefine: {lt: [1, {param: upper}]}\n"
    )
    assert problem.endswith("unknown key 'descripton' for a parameter (did you mean 'description'?)")


def test_an_unknown_key_in_an_expectation_is_a_problem_with_a_suggestion(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "define: {lt: [1, 2]}\nexamples:\n  - name: e\n    events: []\n"
        + "    expect: [{at: 2009-02-01, value: true, reason_contain: x}]\n",
    )
    assert problem.endswith(
        "unknown key 'reason_contain' for an expectation (did you mean 'reason_contains'?)"
    )


def test_a_bad_site_parameter_is_named_at_its_line_in_params_yaml(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("crp_normal:\n  upper: banana\n", encoding="utf-8")
    assert check_problems(tmp_path) == [
        f"{tmp_path / 'params.yaml'}:2:10: crp_normal.upper: 'banana' is not a number, a quantity ('6 mg/L'), "
        "a duration ('30 days') or true/false"
    ]


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("id: r\nversion:\ndescription: d\ncitation: c\n", "2:9: version must be text, not nothing"),
        ("id: r\nversion: [1]\ndescription: d\ncitation: c\n", "2:10: version must be text, not a list"),
        ('id: r\nversion: "1"\ndescription: d\ncitation: " "\n', "4:11: citation is empty"),
        (
            'id: r\nversion: "1"\ndescription: {a: 1}\ncitation: c\n',
            "3:14: description must be text, not a dict",
        ),
    ],
)
def test_a_rule_files_version_description_and_citation_must_be_text(
    tmp_path: Path, header: str, problem: str
) -> None:
    (tmp_path / "r.yaml").write_text(header + "define: true\n", encoding="utf-8")
    assert check_problems(tmp_path) == [f"{tmp_path / 'r.yaml'}:{problem}"]


# ---- the site rules example and site parameters in rules test ----------------------------------------


def test_the_shipped_site_rules_check_and_pass_their_examples() -> None:
    assert run_cli("rules", "check", "examples/site_rules/").exit_code == 0
    result = run_cli("rules", "test", "examples/site_rules/", "--rule", "ferritin_high")
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "3 passed, 0 failed")


def test_rules_test_runs_the_examples_at_the_rules_defaults_not_the_sites() -> None:
    """examples/site_rules/params.yaml sets crp_normal's limit to 10 mg/L; crp_normal's own
    example ('6.1 mg/L is not normal') is written for the published 6 mg/L."""
    result = run_cli("rules", "test", "examples/site_rules/", "--rule", "crp_normal")
    assert result.exit_code == 0, result.output


def test_site_parameters_still_apply_outside_rules_test() -> None:
    site = json.loads(
        run_cli("rules", "show", "crp_normal", "--rules", "examples/site_rules/", "--json").stdout
    )
    assert (site["parameters"]["upper"]["value"], site["parameters"]["upper"]["default"]) == ("10.0", "6.0")


# ---- doses: recorded in mg or in mg/kg ----------------------------------------------------------------

TOCILIZUMAB = "{kind: [medication_start, medication_dose_change], drug: tocilizumab}"


def test_reading_a_dose_from_a_selector_without_a_dose_unit_is_refused_at_its_line(tmp_path: Path) -> None:
    # a dose of 8 mg/kg was read as 8 mg: the field's unit depends on how each dose was recorded
    [problem] = problems_of(
        tmp_path,
        f"events:\n  toci: {TOCILIZUMAB}\ndefine:\n  latest: {{select: toci, field: dose, within: 28 days}}\n",
    )
    assert problem == (
        f"{tmp_path / 'r.yaml'}:8:11: the doses of 'toci' may be in mg or in mg/kg (as each was recorded): "
        "add dose_unit: mg or dose_unit: mg/kg to the selector, "
        "or use daily_dose, which converts one into the other with the weight"
    )


def test_a_where_condition_on_the_dose_needs_the_selectors_dose_unit(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "define:\n  exists: {select: {kind: medication_start, where: {dose: {ge: 10}}}, window: 7 days}\n",
    )
    assert problem.startswith(f"{tmp_path / 'r.yaml'}:6:59: the doses of 'medication start' may be in mg")


def test_a_dose_unit_other_than_mg_or_mg_per_kg_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "define:\n  exists: {select: {kind: medication_start, dose_unit: g}, window: 7 days}\n"
    )
    assert problem.endswith(
        "dose_unit is mg or mg/kg (doses are stored in one of them: any mass unit as mg), not 'g'"
    )


# ---- duration parameters used as lengths and windows ----------------------------------------------


def test_a_negative_default_of_a_duration_parameter_used_as_a_length_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    [problem] = problems_of(
        tmp_path,
        "params:\n  duration: {default: -3 months}\n"
        "define:\n  held_for: {expr: {lt: [1, 2]}, duration: {param: duration}}\n",
    )
    assert problem == (
        f"{tmp_path / 'r.yaml'}:6:23: parameter 'duration' is -3 months, but it is "
        "held_for's duration (r.yaml:8), a length, which cannot be negative"
    )


def test_a_zero_default_of_a_duration_parameter_used_as_a_window_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "params:\n  window: 0 days\ndefine:\n  exists: {select: {kind: weight}, window: {param: window}}\n",
    )
    assert problem.endswith(
        "parameter 'window' is 0 days, but it is exists's window (r.yaml:8), a window, "
        "which needs a positive duration (the last 7 days: 7 days)"
    )


CRP_VALIDITY = {"normal": {"select": {"kind": "lab", "code": "1988-5"}, "within": {"param": "validity"}}}


def test_a_negative_param_option_for_a_length_names_the_parameter(tmp_path: Path) -> None:
    write_rule(tmp_path / "site", "my_crp", CRP_VALIDITY, params={"validity": "30 days"})
    with pytest.raises(RuleError) as caught:
        load_rules([tmp_path / "site"], params={"my_crp": {"validity": "-30 days"}})
    assert [str(p) for p in caught.value.problems] == [
        "--param: my_crp.validity: -30 days cannot be its value: it is normal's within (my_crp.yaml:13), "
        "a length, which cannot be negative"
    ]


def test_a_negative_length_in_params_yaml_is_refused_at_its_line(tmp_path: Path) -> None:
    write_rule(tmp_path, "my_crp", CRP_VALIDITY, params={"validity": "30 days"})
    (tmp_path / "params.yaml").write_text("my_crp:\n  validity: -2 weeks\n", encoding="utf-8")
    assert check_problems(tmp_path) == [
        f"{tmp_path / 'params.yaml'}:2:13: my_crp.validity: -2 weeks cannot be its value: "
        "it is normal's within (my_crp.yaml:13), a length, which cannot be negative"
    ]


# ---- windows whose start or end is a parameter -------------------------------------------------------

# a window from `from` (default 90 days ago) to 30 days ago: line 6 is the default, line 7 the window
FROM = (
    "params:\n  from: {default: -90 days}\n"
    "define: {exists: {select: {kind: weight}, window: {start: {param: from}, end: -30 days}}}\n"
)


def test_a_window_whose_start_parameter_defaults_after_its_end_is_refused_at_the_default(
    tmp_path: Path,
) -> None:
    [problem] = problems_of(tmp_path, FROM.replace("-90 days", "-10 days"))
    assert problem == (
        f"{tmp_path / 'r.yaml'}:6:19: parameter 'from' is -10 days, but it is the start of "
        "exists's window (r.yaml:7), which would then start after it ends (-30 days)"
    )


def test_a_window_whose_end_parameter_defaults_before_its_start_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "params:\n  to: {default: -3 months}\n"
        "define: {exists: {select: {kind: weight}, window: {start: -30 days, end: {param: to}}}}\n",
    )
    assert problem.endswith(
        "parameter 'to' is -3 months, but it is the end of exists's window (r.yaml:7), "
        "which would then end before it starts (-30 days)"
    )


def test_a_window_between_two_parameters_with_reversed_defaults_is_one_problem_at_its_start(
    tmp_path: Path,
) -> None:
    assert problems_of(
        tmp_path,
        "params:\n  from: -10 days\n  to: -20 days\n"
        "define: {exists: {select: {kind: weight}, window: {start: {param: from}, end: {param: to}}}}\n",
    ) == [
        f"{tmp_path / 'r.yaml'}:6:9: parameter 'from' is -10 days, but it is the start of exists's window "
        "(r.yaml:8), which would then start after it ends (-20 days, parameter 'to')"
    ]


def test_a_param_option_that_makes_a_window_start_after_it_ends_names_the_parameter(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(PLAIN + FROM, encoding="utf-8")
    with pytest.raises(RuleError) as caught:
        load_rules([tmp_path], params={"r": {"from": "-1 week"}})
    assert [str(p) for p in caught.value.problems] == [
        "--param: r.from: -1 week cannot be its value: it is the start of exists's window (r.yaml:7), "
        "which would then start after it ends (-30 days)"
    ]


def test_a_params_yaml_value_that_makes_a_window_start_after_it_ends_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "params.yaml").write_text("r:\n  from: 0 days\n", encoding="utf-8")
    assert problems_of(tmp_path, FROM) == [
        f"{tmp_path / 'params.yaml'}:2:9: r.from: 0 days cannot be its value: it is the start of "
        "exists's window (r.yaml:7), which would then start after it ends (-30 days)"
    ]


def test_an_examples_parameter_that_makes_a_window_start_after_it_ends_is_a_problem_at_its_line(
    tmp_path: Path,
) -> None:
    [problem] = problems_of(
        tmp_path, FROM + "examples:\n  - {name: e, params: {from: -29 days}, events: [], expect: []}\n"
    )
    assert problem == (
        f"{tmp_path / 'r.yaml'}:9:30: from: -29 days cannot be its value: it is the start of "
        "exists's window (r.yaml:7), which would then start after it ends (-30 days)"
    )


def test_two_window_parameters_given_together_are_checked_with_each_other(tmp_path: Path) -> None:
    # each value alone fits the other's default (-90 days to 0 days); together they are reversed
    (tmp_path / "r.yaml").write_text(
        PLAIN + "params:\n  from: -90 days\n  to: 0 days\n"
        "define: {exists: {select: {kind: weight}, window: {start: {param: from}, end: {param: to}}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as caught:
        load_rules([tmp_path], params={"r": {"to": "-20 days", "from": "-10 days"}})
    assert [str(p) for p in caught.value.problems] == [
        "--param: r.from: -10 days cannot be its value: it is the start of exists's window (r.yaml:8), "
        "which would then start after it ends (-20 days, parameter 'to')"
    ]


# ---- an example's expected values are of its rule's type ---------------------------------------------


def test_a_number_expected_of_a_boolean_rule_is_a_problem_at_its_line(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        "define: {exists: {select: {kind: weight}, window: 7 days}}\n"
        "examples:\n  - {name: e, events: [], expect: [{at: 2009-03-01, value: 19}]}\n",
    ) == [
        f"{tmp_path / 'r.yaml'}:7:60: expected value is a number (19), but rule 'r' is a boolean: "
        "expect true, false or unknown"
    ]


def test_a_boolean_expected_of_a_number_rule_names_the_rules_unit(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "unit: mg/L\ndefine: {latest: {select: {kind: lab, code: 1988-5}, within: 30 days}}\n"
        "examples:\n  - name: e\n    events: []\n    expect:\n      - {at: 2009-03-01, value: true}\n",
    )
    assert problem == (
        f"{tmp_path / 'r.yaml'}:11:33: expected value is a boolean (true), but rule 'r' is a "
        "number [mg/L]: expect a number in mg/L or unknown"
    )


# ---- an example's parameters --------------------------------------------------------------------------


def test_an_unknown_parameter_in_an_examples_params_is_a_problem_at_its_line(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "params:\n  below: {default: 20 mm/h}\ndefine: {lt: [1, {param: below}]}\n"
        "examples:\n  - name: e\n    params: {belw: 10 mm/h}\n    events: []\n    expect: []\n",
    )
    assert problem == f"{tmp_path / 'r.yaml'}:10:20: rule 'r' has no parameter 'belw' (did you mean 'below'?)"


def test_rules_test_with_an_unknown_example_parameter_exits_8_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        PLAIN + "params:\n  below: 20\ndefine: {lt: [1, {param: below}]}\n"
        "examples:\n  - {name: e, params: {belw: 10}, events: [], expect: []}\n",
        encoding="utf-8",
    )
    result = run_cli("rules", "test", tmp_path, "--rule", "r")
    assert (result.exit_code, result.stderr.splitlines()[1].strip()) == (
        8,
        f"{tmp_path / 'r.yaml'}:9:30: rule 'r' has no parameter 'belw' (did you mean 'below'?)",
    )


def test_an_examples_negative_length_parameter_is_a_problem_at_its_line(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "params:\n  gap: 1 day\ndefine: {in_episode: {select: {kind: mas_episode}, merge_gap: {param: gap}}}\n"
        "examples:\n  - {name: e, params: {gap: -1 day}, events: [], expect: []}\n",
    )
    assert problem.endswith(
        "gap: -1 day cannot be its value: it is in_episode's merge_gap (r.yaml:7), a length, "
        "which cannot be negative"
    )


# ---- status ---------------------------------------------------------------------------------------------


def test_a_rule_without_a_status_is_unspecified_not_checked(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(PLAIN + "define: true\n", encoding="utf-8")
    listed = json.loads(run_cli("rules", "list", "--rules", tmp_path, "--json").stdout)
    assert {r["id"]: r["status"] for r in listed["rules"]}["r"] == "unspecified"


def test_every_builtin_rule_states_its_status() -> None:
    unstated = [
        path.stem
        for path in sorted((BUILTIN_DIR / "sjia").glob("*.yaml"))
        if yaml.safe_load(path.read_text(encoding="utf-8")).get("status")
        not in ("checked", "conflict", "working_definition")
    ]
    assert unstated == []


def test_a_failed_expectation_names_its_patient(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        PLAIN + "define: {exists: {select: {kind: weight}, window: 7 days}}\n"
        "examples:\n  - name: e\n    events:\n"
        "      - {patient_id: X, kind: weight, occurred_at: 2009-03-01, value: 20, unit: kg}\n"
        "      - {patient_id: Y, kind: weight, occurred_at: 2009-02-01, value: 20, unit: kg}\n"
        "    expect: [{patient_id: Y, at: 2009-03-01, value: true}]\n",
        encoding="utf-8",
    )
    result = run_cli("rules", "test", tmp_path, "--rule", "r")
    assert "     Y at 2009-03-01: expected true, got false" in result.stdout


# ---- messages that point at the cause -------------------------------------------------------------


def test_a_reference_to_a_rule_whose_file_is_not_yaml_is_not_also_unknown(tmp_path: Path) -> None:
    broken = rule_file(tmp_path, "dose_mg_kg", "define:\n  all: [true, false\n")
    rule_file(tmp_path, "b", "define:\n  not: {rule: dose_mg_kg}\n")
    assert [p.file for p in problems(tmp_path)] == [str(broken)]


def test_a_parameter_default_in_an_unknown_unit_names_the_unknown_symbol(tmp_path: Path) -> None:
    [problem, *_] = problems_of(tmp_path, "params:\n  below: {default: 20 mm/hr}\ndefine: true\n")
    assert problem.endswith(
        "'20 mm/hr': 'mm/hr' is not a UCUM unit: unknown unit symbol 'hr'; UCUM writes it 'mm/h'"
    )


def test_a_parameter_whose_default_has_a_problem_is_not_also_unknown_where_it_is_used(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path, "params:\n  below: {default: 20 mm/hr}\ndefine: {lt: [1, {param: below}]}\n"
    )
    assert [p.split(": ", 1)[1] for p in found] == [
        "'20 mm/hr': 'mm/hr' is not a UCUM unit: unknown unit symbol 'hr'; UCUM writes it 'mm/h'"
    ]


def test_an_unknown_codes_suggestion_names_what_the_suggested_code_is(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "define: {exists: {select: {kind: lab, code: 26499-4}, window: 90 days}}\n"
    )
    assert "unknown code '26499-4' (did you mean '2276-4', ferritin?)" in problem


def test_an_unknown_key_source_suggests_citation(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(PLAIN + "source: a paper\ndefine: true\n", encoding="utf-8")
    assert check_problems(tmp_path) == [
        f"{tmp_path / 'r.yaml'}:5:9: unknown key 'source' (did you mean 'citation'?)"
    ]


def test_a_fraction_of_a_year_says_durations_are_whole_numbers(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "define: {held_for: {expr: true, duration: 0.25 years}}\n")
    assert "a duration is a whole number of hours, days, weeks, months or years" in problem


def test_a_rule_file_with_an_upper_case_extension_is_read(tmp_path: Path) -> None:
    (tmp_path / "r.YAML").write_text(PLAIN + "define: true\n", encoding="utf-8")
    assert "r" in load_rules([tmp_path]).rules


def test_rules_check_of_an_empty_directory_says_it_holds_no_rule_files(tmp_path: Path) -> None:
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        f"note: {tmp_path} holds no rule files (*.yaml or *.yml): no rules were read from it" in result.stderr
    )


def test_rules_show_gives_the_default_beside_a_site_value_with_its_unit() -> None:
    result = run_cli("rules", "show", "crp_normal", "--rules", "examples/site_rules/")
    assert "param upper = 10.0 mg/L (default 6.0 mg/L)" in result.stdout


def test_a_rule_may_say_what_its_truth_means_for_the_patient(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        "flare",
        {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}},
        meaning="bad",
    )
    assert load_rules([tmp_path]).rules["flare"].meaning == "bad"


def test_a_meaning_other_than_good_bad_or_neutral_is_refused_at_its_line(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        "flare",
        {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}},
        meaning="goood",
    )
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert [(p.line, p.message) for p in info.value.problems] == [
        (
            5,  # id, version, description, citation, meaning
            "meaning (of the rule being true, for the patient) is good, bad or neutral, not 'goood' (did you mean 'good'?)",
        )
    ]


def test_a_number_rule_cannot_have_a_meaning(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        "crp",
        {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
        meaning="bad",
    )
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    assert [p.message for p in info.value.problems] == [
        "meaning says what the rule being true means: a number has no true"
    ]


def test_every_boolean_rule_of_the_built_in_pack_says_what_its_truth_means() -> None:
    rules = load_rules([BUILTIN_DIR / "sjia"])
    assert [r.id for r in rules.rules.values() if r.type.kind == "bool" and r.meaning is None] == []


def test_a_rule_directory_given_twice_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As $TIMELINE_RULES, a cohort file's rules: and --rules may all name a site's folder,
    relative or absolute: its rules are not "also defined" in themselves."""
    write_rule(
        tmp_path / "site",
        "flare",
        {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}},
    )
    monkeypatch.chdir(tmp_path)
    rules = load_rules(["site", tmp_path / "site", "./site"])
    assert (rules.rules["flare"].overrides, len(rules.sources)) == (None, 1)


def test_a_directory_given_twice_is_read_at_its_last_place(tmp_path: Path) -> None:
    """[A, B, A]: A comes last, so its rules override B's, as the last directory's do."""
    define = {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}}
    write_rule(tmp_path / "a", "flare", define, version="1")
    write_rule(tmp_path / "b", "flare", define, version="2")
    assert load_rules([tmp_path / "a", tmp_path / "b", tmp_path / "a"]).rules["flare"].version == "1"


RASH_WEEK = {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}}


def test_the_same_rule_id_twice_in_one_folder_is_a_problem_naming_both_files(tmp_path: Path) -> None:
    first = write_rule(tmp_path, "flare", RASH_WEEK)
    second = tmp_path / "flare_copy.yaml"
    second.write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    assert str(only(tmp_path)) == f"{second}:1:5: rule id 'flare' is also defined in {first}"


def test_a_copy_of_a_rule_in_a_subfolder_is_a_problem_not_an_override(tmp_path: Path) -> None:
    """Helper 62: an archived copy in zz_archive/ silently replaced the current rule (the path
    sorting last won), with exit 0; in old/ the current one won instead."""
    current = write_rule(tmp_path, "flare", RASH_WEEK, version="2")
    archived = write_rule(tmp_path / "zz_archive", "flare", RASH_WEEK, version="1")
    assert str(only(tmp_path)) == (
        f"{archived}:1:5: rule id 'flare' is also defined in {current} (a rule directory, its "
        "subfolders included, defines each rule once; only a later directory overrides: move the "
        "copy you do not mean out of the rule directory)"
    )


def test_a_copy_of_a_rule_in_a_folder_sorting_first_is_a_problem_too(tmp_path: Path) -> None:
    """In a_old/ the archived copy is read first: the current file is the one reported."""
    write_rule(tmp_path, "flare", RASH_WEEK, version="2")
    archived = write_rule(tmp_path / "a_old", "flare", RASH_WEEK, version="1")
    found = only(tmp_path)
    assert found.file == str(tmp_path / "flare.yaml")
    assert f"is also defined in {archived} (a rule directory" in found.message


def test_a_rule_in_a_subfolder_is_read(tmp_path: Path) -> None:
    write_rule(tmp_path / "findings", "flare", RASH_WEEK)
    assert load_rules([tmp_path]).rules["flare"].source == str(tmp_path / "findings" / "flare.yaml")


def test_a_hidden_folder_of_a_rule_directory_is_not_read(tmp_path: Path) -> None:
    """A notebook's .ipynb_checkpoints/ (or .git/) holds copies nobody means as rules."""
    write_rule(tmp_path, "flare", RASH_WEEK, version="2")
    write_rule(tmp_path / ".ipynb_checkpoints", "flare", RASH_WEEK, version="1")
    write_rule(tmp_path / ".ipynb_checkpoints", "other", RASH_WEEK)
    rules = load_rules([tmp_path])
    assert (rules.rules["flare"].version, "other" in rules.rules) == ("2", False)


def test_a_hidden_rule_file_is_not_read(tmp_path: Path) -> None:
    write_rule(tmp_path, "flare", RASH_WEEK)
    (tmp_path / ".flare.yaml").write_text("not: [a rule", encoding="utf-8")
    assert list(load_rules([tmp_path]).rules) == ["flare"]


def test_a_params_yaml_in_a_subfolder_is_a_problem_and_never_applied(tmp_path: Path) -> None:
    """Helper 62: zz_old/params.yaml's 10 mg/L silently won over the site's 8 mg/L."""
    (tmp_path / "params.yaml").write_text("crp_normal: {upper: 8 mg/L}\n", encoding="utf-8")
    (tmp_path / "zz_old").mkdir()
    (tmp_path / "zz_old" / "params.yaml").write_text("crp_normal: {upper: 10 mg/L}\n", encoding="utf-8")
    with pytest.raises(RuleError) as caught:
        load_rules([BUILTIN_DIR / "sjia", tmp_path])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'zz_old' / 'params.yaml'}:1:1: a params.yaml is read only at the top of a rule "
        f"directory, not in a subfolder: move the values you mean into {tmp_path}/params.yaml and "
        "this file out of the rule directory"
    ]


def test_a_params_yaml_only_in_a_subfolder_is_a_problem_too(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "params.yaml").write_text("crp_normal: {upper: 10 mg/L}\n", encoding="utf-8")
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8
    assert f"{tmp_path / 'old' / 'params.yaml'}:1:1: a params.yaml is read only at the top" in result.stderr


def test_rules_check_of_a_folder_with_an_archived_copy_exits_8(tmp_path: Path) -> None:
    write_rule(tmp_path, "flare", RASH_WEEK)
    write_rule(tmp_path / "zz_archive", "flare", RASH_WEEK)
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8
    assert "rule id 'flare' is also defined in" in result.stderr


def test_a_site_rule_in_a_subfolder_still_overrides_the_built_in_one(tmp_path: Path) -> None:
    mine = write_rule(tmp_path / "site" / "labs", "crp_normal", CRP_OVERRIDE, params=CRP_OVERRIDE_PARAMS)
    rules = load_rules([BUILTIN_DIR / "sjia", tmp_path / "site"])
    assert (rules.rules["crp_normal"].source, rules.rules["crp_normal"].overrides) == (
        str(mine),
        str(BUILTIN_DIR / "sjia" / "crp_normal.yaml"),
    )


def test_a_directory_and_its_subfolder_both_given_read_its_files_once(tmp_path: Path) -> None:
    """--rules site --rules site/labs: the file is the later directory's, read once."""
    write_rule(tmp_path / "site" / "labs", "flare", RASH_WEEK)
    rules = load_rules([tmp_path / "site", tmp_path / "site" / "labs"])
    assert (rules.rules["flare"].overrides, len(rules.sources)) == (None, 1)


def test_rules_test_prints_a_rule_id_and_example_name_with_brackets_as_written(tmp_path: Path) -> None:
    example = {"name": "[bold]x[/bold] at 100.4 [degF]", "events": [{"patient_id": "X", "kind": "lab", "code": "1988-5",
               "occurred_at": "2009-03-01", "value": 3, "unit": "mg/L"}], "expect": [{"at": "2009-03-01", "value": True}]}  # fmt: skip
    write_rule(tmp_path, "crp_ok", {"rule": "crp_normal"}, examples=[example])
    result = run_cli("rules", "test", tmp_path, "--rule", "crp_ok")
    assert "PASS crp_ok@1: [bold]x[/bold] at 100.4 [degF]" in result.stdout


def test_rules_test_of_a_rule_without_examples_says_nothing_was_tested(tmp_path: Path) -> None:
    write_rule(tmp_path, "crp_ok", {"rule": "crp_normal"})
    result = run_cli("rules", "test", tmp_path, "--rule", "crp_ok")
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "0 passed, 0 failed")
    assert "note: crp_ok has no examples: nothing of it was tested" in result.stderr


def test_a_parameter_the_definition_never_reads_is_a_problem_at_its_line(tmp_path: Path) -> None:
    """Helper 43: a value given to it (params.yaml, --param, a reading rule's with:) silently
    changed nothing, while explain showed it as applied."""
    [problem] = problems_of(
        tmp_path,
        "params:\n  validity: {default: 14 days}\n"
        "define: {lt: [{latest: {select: {kind: lab, code: 1988-5}, within: 14 days}}, 5 mg/L]}\n",
    )
    assert problem == (
        f"{tmp_path / 'r.yaml'}:6:13: parameter 'validity' is declared but the definition never reads it: "
        "a value given to it (params.yaml, --param, with: {validity: …}) would change nothing; "
        "read it ({param: validity}) or remove it"
    )


def test_a_parameter_passed_on_to_a_rule_read_at_other_values_is_read(tmp_path: Path) -> None:
    write_rule(
        tmp_path, "crp_lt", {"lt": [{"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": {"param": "validity"}}}, "5 mg/L"]},
        params={"validity": {"default": "14 days"}},
    )  # fmt: skip
    write_rule(
        tmp_path, "crp_lt_short", {"rule": {"id": "crp_lt", "with": {"validity": {"param": "short"}}}},
        params={"short": {"default": "7 days"}},
    )  # fmt: skip
    assert "crp_lt_short" in load_rules([tmp_path]).rules


def test_an_unquoted_decimal_version_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        PLAIN.replace('"1"', "1.10") + "define: {lt: [1, 2]}\n", encoding="utf-8"
    )
    [problem] = check_problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'r.yaml'}:2:10: write the version in quotes")
    assert "YAML reads it as the number 1.1" in problem


def test_a_tab_indenting_a_rule_file_is_named_as_a_tab(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "define:\n\tlt: [1, 2]\n")
    assert problem.startswith(f"{tmp_path / 'r.yaml'}:6:1: YAML syntax error: ")
    assert problem.endswith("(a tab character: YAML indents with spaces, never tabs)")


def test_an_unquoted_bracketed_unit_in_a_flow_list_says_to_quote_it(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "define: {ge: [{latest: {select: {kind: body_temperature}, within: 1 day}}, 100.4 [degF]]}\n",
    )
    assert problem.endswith('(a unit in brackets inside [ ] or { } must be quoted, e.g. "100.4 [degF]")')


def test_an_expectation_for_a_patient_without_events_in_the_example_is_a_problem(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "define: {lt: [1, 2]}\nexamples:\n  - name: e\n    events: [{patient_id: X, kind: weight, "
        "occurred_at: 2009-01-01, value: 20, unit: kg}]\n    expect: [{at: 2009-02-01, value: true, patient_id: Y}]\n",
    )
    assert problem.endswith("no event of this example is for patient 'Y' (its events are for 'X')")


def test_a_duration_parameter_given_a_bare_number_says_to_give_its_unit(tmp_path: Path) -> None:
    write_rule(
        tmp_path, "r", {"latest": {"select": {"kind": "weight"}, "within": {"param": "validity"}}},
        params={"validity": {"default": "30 days"}},
    )  # fmt: skip
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path], params={"r": {"validity": 14}})
    assert "a duration needs its unit, e.g. '14 days'" in info.value.problems[0].message


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (
            "{last: {select: {kind: weight}, within: 7 days}}",
            "unknown key 'within' for last (did you mean 'window'? the latest value no older than a "
            "duration is latest: {select, within})",
        ),
        (
            "{latest: {select: {kind: weight}, window: 7 days}}",
            "unknown key 'window' for latest (did you mean 'within'?)",
        ),
        ("{gte: [1, 2]}", "unknown operator 'gte' (did you mean 'ge'?)"),
        (
            "{exists: {select: {kind: weight, where: {value: {'>=': 20 kg}}}, window: 7 days}}",
            "where: value takes one comparison, e.g. {ge: 38 Cel} (did you mean 'ge'?)",
        ),
    ],
    ids=["within-for-an-aggregate", "window-for-latest", "gte", "where-symbol"],
)
def test_a_word_from_another_language_gets_a_did_you_mean(tmp_path: Path, define: str, message: str) -> None:
    [problem] = problems_of(tmp_path, f"define: {define}\n")
    assert problem.endswith(message)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ("and", "the language writes AND as all: [...]"),
        ("AND", "the language writes AND as all: [...]"),
        ("or", "the language writes OR as any: [...]"),
        ("either", "the language writes OR as any: [...]"),
        ("none", "the language writes NONE OF as not: {any: [...]}"),
        ("ALL", "operators are written in lowercase, 'all'"),
        ("Any", "operators are written in lowercase, 'any'"),
    ],
)
def test_a_word_of_logic_is_told_how_the_language_writes_it(tmp_path: Path, op: str, message: str) -> None:
    """Helper 62: by spelling, `and` got "did you mean 'any'?" and `none` "'ne'": the opposite."""
    [problem] = problems_of(tmp_path, f"define: {{{op}: [true, false]}}\n")
    assert problem.endswith(f"unknown operator {op!r}: {message}")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            "{kind: lab, code: 1988-5, occurred_at: 2009-01-01, value: 3, unit: mg/L}",
            "an example event needs patient_id",
        ),
        ("{patient_id: X, kind: labs, occurred_at: 2009-01-01}", "unknown kind 'labs' (did you mean 'lab'?)"),
        (
            "{patient_id: X, kind: lab, occurred_at: 2009-01-01, value: 3, unit: mg/L}",
            "a lab event needs code",
        ),
        (
            "{patient_id: X, kind: weight, occurred_at: 2009-01-01, value: 20, unit: kg, dose: 5}",
            "a weight event has no dose",
        ),
    ],
    ids=["no-patient", "unknown-kind", "missing-field", "foreign-field"],
)
def test_an_example_event_ingest_would_refuse_is_a_problem_at_its_line(
    tmp_path: Path, event: str, message: str
) -> None:
    [problem] = problems_of(
        tmp_path,
        f"define: {{lt: [1, 2]}}\nexamples:\n  - name: e\n    events:\n      - {event}\n    expect: []\n",
    )
    assert problem.startswith(f"{tmp_path / 'r.yaml'}:9:")
    assert message in problem


def test_a_parameter_whose_name_begins_anothers_is_not_read_by_passing_on_the_other(tmp_path: Path) -> None:
    """Helper 45: `win` counted as read because `win2` was passed on."""
    write_rule(
        tmp_path, "r", {"rule": {"id": "uveitis_inactive", "with": {"window": {"param": "win2"}}}},
        params={"win": {"default": "30 days"}, "win2": {"default": "60 days"}},
    )  # fmt: skip
    with pytest.raises(RuleError) as info:
        load_rules([BUILTIN_DIR, tmp_path])
    assert [p.message.split(":")[0] for p in info.value.problems] == [
        "parameter 'win' is declared but the definition never reads it"
    ]


def test_finding_present_within_0_days_is_refused(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        "r",
        {"finding_present": {"select": {"kind": "finding", "code": "uveitis"}, "within": "0 days"}},
    )
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    (problem,) = info.value.problems
    assert "0 would make such a record never present" in problem.message
