"""Cohort files are checked before any data is touched; every problem has file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cohort_support import COHORT, RULES, rules, write
from tests.support import run_cli
from timeline.cohort.spec import CohortError, load_cohort
from timeline.language.durations import Duration
from timeline.language.loader import BUILTIN_DIR, load_rules

BAD = """\
cohort: bad
version: "1"
index:
  first: {kind: medication_start, drug: anakinra}
population:
  include: [has_sjai]
time_points: [3 months, 6 mnths]
outcomes:
  - {rule: age_at}
  - {rule: arthritis, denominator: treated}
time_to_event:
  - {rule: afebrile_week}
unknown_key: 1
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(CohortError) as info:
        load_cohort(path, rules())
    assert info.value.exit_code == 8
    return [str(p).replace(str(path), "FILE") for p in info.value.problems]


def test_the_fixture_cohort_loads() -> None:
    spec = load_cohort(COHORT, rules())
    assert spec.id == "synthetic_anakinra"
    assert [tp.offset for tp in spec.time_points] == [
        Duration(3, "month"),
        Duration(6, "month"),
        Duration(12, "month"),
    ]
    assert spec.drug == "anakinra"  # from the index selector
    assert [o.denominator for o in spec.outcomes] == ["all", "followed", "on_drug"]


def test_outcomes_of_one_rule_without_labels_are_labelled_by_their_ids(tmp_path: Path) -> None:
    """Helper 40: three rows all named 'arthritis' under three denominators."""
    text = COHORT.read_text(encoding="utf-8").replace(", label: Active arthritis", "")
    text = text.replace("time_to_event:", "  - {id: afebrile_at, rule: afebrile_week}\ntime_to_event:")
    spec = load_cohort(write(tmp_path, text), rules())
    assert [o.label for o in spec.outcomes] == [
        "arthritis_all",
        "arthritis_followed",
        "arthritis_on_drug",
        "afebrile_week",
    ]


def test_time_to_event_items_of_one_rule_without_labels_are_labelled_by_their_ids(tmp_path: Path) -> None:
    """Helper 49: a sustained and a first-instant item of one rule were both 'joints_quiet'."""
    text = COHORT.read_text(encoding="utf-8").replace(
        "time_to_event:\n",
        "time_to_event:\n  - {id: afebrile_lasting, rule: afebrile_week, window: 3 months, sustained: true}\n",
    )
    spec = load_cohort(write(tmp_path, text), rules())
    assert [t.label for t in spec.time_to_event] == ["afebrile_lasting", "Fever resolved"]


def test_an_unquoted_decimal_version_is_refused_at_its_line(tmp_path: Path) -> None:
    """Helper 49: `version: 1.10` became "1.1" (rule files refuse it)."""
    text = COHORT.read_text(encoding="utf-8").replace('version: "1"', "version: 1.10")
    with pytest.raises(CohortError) as caught:
        load_cohort(write(tmp_path, text), rules())
    assert [(p.line, p.message[:39]) for p in caught.value.problems] == [
        (4, 'write the version in quotes (version: "')
    ]


def test_unknown_rule_id_is_reported_at_its_position_with_a_suggestion(tmp_path: Path) -> None:
    assert "FILE:6:13: unknown rule 'has_sjai' (did you mean 'has_sjia'?)" in problems(tmp_path, BAD)


def test_a_malformed_duration_is_reported_at_its_position(tmp_path: Path) -> None:
    found = [p for p in problems(tmp_path, BAD) if p.startswith("FILE:7:25:")]
    assert found and "is not a duration" in found[0]


def test_a_numeric_rule_cannot_be_an_outcome(tmp_path: Path) -> None:
    assert (
        "FILE:9:12: outcome rule 'age_at' is number [a]; it must be a boolean (true/false/unknown)"
        in problems(tmp_path, BAD)
    )


def test_an_unknown_denominator_policy_names_the_policies(tmp_path: Path) -> None:
    assert "FILE:10:36: denominator must be one of all, followed, on_drug, not 'treated'" in problems(
        tmp_path, BAD
    )


def test_a_time_to_event_outcome_needs_a_window(tmp_path: Path) -> None:
    assert "FILE:12:5: a time-to-event outcome needs a window (e.g. window: 3 months)" in problems(
        tmp_path, BAD
    )


def test_an_unknown_top_level_key_is_reported_at_the_key(tmp_path: Path) -> None:
    assert "FILE:13:1: unknown key 'unknown_key'" in problems(tmp_path, BAD)


# ---- one root problem, not the problems that follow only from it (helper 62, finding 10) ----


def test_a_misspelt_time_points_key_is_the_only_problem_reported(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("time_points:", "timepoints:")
    assert problems(tmp_path, text) == ["FILE:19:1: unknown key 'timepoints' (did you mean 'time_points'?)"]


def test_outcomes_without_time_points_are_told_so_once(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("time_points: [3 months, 6 months, 12 months]\n", "")
    found = problems(tmp_path, text)
    assert [p for p in found if "time_points" in p] == [
        "FILE:20:5: outcomes are reported at time_points: add time_points: [3 months, …]"
    ]


def test_an_outcomes_time_point_is_not_judged_against_time_points_given_wrong(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "[3 months, 6 months, 12 months]", "[3 months, 6 monhts]"
    )
    text = text.replace("outcomes:\n", "outcomes:\n  - {id: late, rule: arthritis, at: [6 months]}\n")
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("FILE:19:25: time point: "), found


def test_no_problem_lists_empty_time_points(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("time_points: [3 months, 6 months, 12 months]\n", "")
    text = text.replace("outcomes:\n", "outcomes:\n  - {id: late, rule: arthritis, at: [6 months]}\n")
    assert not [p for p in problems(tmp_path, text) if "()" in p]


def test_a_time_point_given_as_a_number_alone_is_asked_its_unit_months_first(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("[3 months, 6 months, 12 months]", "[3, 6 months]")
    assert problems(tmp_path, text) == [
        "FILE:19:15: a time point needs a unit: write 3 months (or weeks, days, years)"
    ]


def test_a_misspelt_required_key_is_not_also_reported_missing(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("\nindex:", "\nindx:")
    assert [p for p in problems(tmp_path, text) if "index" in p] == [
        "FILE:6:1: unknown key 'indx' (did you mean 'index'?)"
    ]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    lines = [int(p.split(":")[1]) for p in problems(tmp_path, BAD)]
    assert lines == [6, 7, 9, 10, 12, 13]


def test_yaml_syntax_errors_carry_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, "cohort: x\nindex: {first: [\n")
    assert len(found) == 1 and found[0].startswith("FILE:3:1: YAML syntax error")


def test_selector_problems_use_the_rule_language_messages(tmp_path: Path) -> None:
    text = "cohort: x\nversion: '1'\nindex:\n  first: {kind: medication_strat}\n"
    assert "FILE:4:17: unknown kind 'medication_strat' (did you mean 'medication_start'?)" in problems(
        tmp_path, text
    )


def test_the_on_drug_denominator_needs_a_drug(tmp_path: Path) -> None:
    text = (
        "cohort: x\nversion: '1'\nindex:\n  first: {kind: diagnosis, code: sJIA}\n"
        "time_points: [3 months]\noutcomes:\n  - {rule: arthritis, denominator: on_drug}\n"
    )
    assert any("the on_drug denominator needs the study drug" in p for p in problems(tmp_path, text))


def test_cohort_check_exits_8_and_prints_each_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = run_cli("cohort", "check", path, "--rules", RULES)
    assert result.exit_code == 8
    assert "cohort file has 6 problems" in result.stderr
    assert f"{path}:6:13: unknown rule 'has_sjai'" in result.stderr


def test_cohort_check_accepts_a_valid_file() -> None:
    result = run_cli("cohort", "check", COHORT, "--rules", RULES)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: cohort synthetic_anakinra v1")


def test_cohort_check_reports_a_missing_file_cleanly(tmp_path: Path) -> None:
    result = run_cli("cohort", "check", tmp_path / "nope.yaml", "--rules", RULES)
    assert result.exit_code == 8
    assert "cannot read the cohort file" in result.stderr


def test_aliases_that_expand_past_the_limit_are_refused_not_expanded(tmp_path: Path) -> None:
    # nine levels of nine aliases: 9**9 values once expanded (the "billion laughs"); the
    # limit is passed inside a5 (9**6 values), on line 6
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    assert problems(tmp_path, "\n".join(lines) + "\n") == [
        "FILE:6:5: more than 100,000 values once its aliases (*name) are expanded; not read"
    ]


@pytest.mark.parametrize("point", ["100000 years", "99999999999999999999 months", "201 years"])
def test_a_time_point_longer_than_200_years_is_refused_by_check(tmp_path: Path, point: str) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("12 months]", f"12 months, {point}]")
    assert text != COHORT.read_text(encoding="utf-8")
    assert f"FILE:19:46: time point: {point!r} is longer than 200 years, the longest duration allowed" in (
        problems(tmp_path, text)
    )


def test_a_time_point_of_200_years_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, COHORT.read_text(encoding="utf-8").replace("12 months]", "12 months, 200 years]"))
    assert [tp.label for tp in load_cohort(path, rules()).time_points][-1] == "200 years"


def test_an_index_threshold_in_a_unit_that_does_not_convert_is_refused_by_check(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "first: {kind: medication_start, drug: anakinra}",
        "first: {kind: lab, code: 1988-5, where: {value: {ge: 5 kg}}}",
    )
    assert "FILE:7:10: where value: units do not convert: kg vs mg/L" in problems(tmp_path, text)


def test_a_negative_mas_merge_gap_is_refused(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "  episodes: {select: {kind: mas_episode}}",
        "  episodes: {select: {kind: mas_episode}}\n  merge_gap: -5 days",
    )
    assert "FILE:28:14: merge_gap must be 0 or more, not '-5 days'" in problems(tmp_path, text)


def test_an_outcome_at_no_time_point_is_refused(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("denominator: all}", "denominator: all, at: []}", 1)
    assert text != COHORT.read_text(encoding="utf-8")
    assert any(
        p.endswith("at lists some of the time_points (leave it out for all of them)")
        for p in problems(tmp_path, text)
    )


def test_an_empty_cohort_version_is_a_problem(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8")
    assert '\nversion: "1"\n' in text
    found = problems(tmp_path, text.replace('\nversion: "1"\n', '\nversion: " "\n'))
    assert [p for p in found if "version" in p] == ["FILE:4:10: version is empty"]


# the fixture with an index of two drugs; "on the drug" (its on_drug denominator) by a rule
TWO_DRUGS = (
    COHORT.read_text(encoding="utf-8")
    .replace(
        "first: {kind: medication_start, drug: anakinra}",
        "first: {kind: medication_start, drug: [anakinra, tocilizumab]}",
    )
    .replace(
        "  end: [end_of_follow_up, death]\n",
        "  end: [end_of_follow_up, death]\n  on_drug_rule: on_study_drug\n",
    )
)


def test_an_index_naming_two_drugs_without_a_study_drug_is_refused_by_check(tmp_path: Path) -> None:
    assert problems(tmp_path, TWO_DRUGS) == [
        "FILE:7:41: the index names 2 drugs (anakinra, tocilizumab) and the cohort names no study drug, "
        "so there would be no discontinuation table: add drug: NAME (the drug whose stops to follow), drug: index (each patient's own index "
        "drug), "
        "or set discontinuations: false"
    ]


def test_discontinuations_asked_for_without_a_study_drug_are_refused_at_their_line(tmp_path: Path) -> None:
    assert problems(tmp_path, TWO_DRUGS + "discontinuations: true\n") == [
        "FILE:29:19: the discontinuation table needs the study drug and the index names 2 drugs "
        "(anakinra, tocilizumab): add drug: NAME (the drug whose stops to follow), drug: index (each patient's own index "
        "drug), or set discontinuations: false"
    ]


def test_censoring_at_discontinuation_with_only_an_on_drug_rule_is_refused(tmp_path: Path) -> None:
    text = TWO_DRUGS.replace("window: 3 months}", "window: 3 months, censor: [death, discontinuation]}")
    assert problems(tmp_path, text + "discontinuations: false\n") == [
        "FILE:26:98: censoring at discontinuation needs the study drug (drug: NAME, or drug: index for each "
        "patient's own), whose discontinuation date it censors at (an on_drug_rule has none)"
    ]


def test_without_a_study_drug_the_default_censoring_leaves_out_discontinuation(tmp_path: Path) -> None:
    spec = load_cohort(write(tmp_path, TWO_DRUGS + "discontinuations: false\n"), rules())
    assert spec.time_to_event[0].censor == ("end_of_follow_up", "death")


def test_a_rule_of_the_wrong_type_is_named_with_the_unit_it_declares(tmp_path: Path) -> None:
    own = tmp_path / "rules"
    own.mkdir()
    (own / "weeks_on_drug.yaml").write_text(
        'id: weeks_on_drug\nversion: "1"\ndescription: d\ncitation: c\nunit: wk\n'
        "define: {time_since: {first: {kind: medication_start, drug: anakinra}, unit: days}}\n",
        encoding="utf-8",
    )
    text = COHORT.read_text(encoding="utf-8").replace("rule: afebrile_week", "rule: weeks_on_drug")
    path = write(tmp_path, text)
    with pytest.raises(CohortError) as info:
        load_cohort(path, load_rules([RULES, own]))
    assert [p.message for p in info.value.problems] == [
        "time-to-event rule 'weeks_on_drug' is number [wk]; it must be a boolean (true/false/unknown)"
    ]


def test_unknown_rules_with_only_the_built_in_pack_add_one_note_about_rules_dir(tmp_path: Path) -> None:
    path = write(tmp_path, COHORT.read_text(encoding="utf-8"))
    with pytest.raises(CohortError) as info:
        load_cohort(path, load_rules([BUILTIN_DIR / "sjia"]))
    assert info.value.details()[-1] == (
        "note: only the built-in rules were loaded: rules of your own need --rules DIR (or $TIMELINE_RULES), "
        "or the cohort file's rules: [DIR]"
    )


# ---- a cohort file's own rule directories (rules:)


def _study(tmp_path: Path, rules_line: str = "rules: [study_rules]") -> Path:
    """A study folder: its cohort file names its rule directory (the fixture rules, copied)."""
    study = tmp_path / "study"
    (study / "study_rules").mkdir(parents=True)
    for f in RULES.glob("*.yaml"):
        (study / "study_rules" / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    text = COHORT.read_text(encoding="utf-8").replace('version: "1"\n', f'version: "1"\n{rules_line}\n', 1)
    return write(study, text)


def test_a_cohort_file_naming_its_rule_directory_needs_no_rules_option(tmp_path: Path) -> None:
    result = run_cli("cohort", "check", _study(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: cohort synthetic_anakinra v1")


def test_a_cohort_files_rule_directory_is_relative_to_the_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _study(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run_cli("cohort", "check", path).exit_code == 0


def test_a_missing_rule_directory_is_reported_at_its_line_without_a_cascade_of_unknown_rules(
    tmp_path: Path,
) -> None:
    path = _study(tmp_path, "rules: [stduy_rules]")
    result = run_cli("cohort", "check", path)
    assert result.exit_code == 8
    line = path.read_text(encoding="utf-8").splitlines().index("rules: [stduy_rules]") + 1
    assert f"{path}:{line}:9: rule directory 'stduy_rules' does not exist" in result.stderr
    assert "unknown rule 'has_sjia'" not in result.stderr
    assert "use(s) of unknown rules not listed: fix the rule directory first" in result.stderr


def test_loading_a_cohort_without_its_rule_directory_says_how_to_load_it(tmp_path: Path) -> None:
    with pytest.raises(CohortError) as info:
        load_cohort(_study(tmp_path), load_rules([BUILTIN_DIR / "sjia"]))
    assert [p.message for p in info.value.problems] == [
        "the rules of 'study_rules' were not loaded: the cohort commands load a cohort file's rule "
        "directories; from Python, load rule_dirs(cohort_rule_dirs(FILE)) (timeline.cohort.spec)"
    ]


def _site_dir(tmp_path: Path, name: str, text: str) -> Path:
    """A study folder whose second rule directory holds one file (``params.yaml``, ``codes.yaml``)."""
    path = _study(tmp_path, "rules: [study_rules, site]")
    (path.parent / "site").mkdir()
    (path.parent / "site" / name).write_text(text, encoding="utf-8")
    return path


def test_loading_a_cohort_without_its_params_only_rule_directory_says_how_to_load_it(tmp_path: Path) -> None:
    path = _site_dir(tmp_path, "params.yaml", "crp_normal: {limit: 10 mg/L}\n")
    with pytest.raises(CohortError) as info:
        load_cohort(path, load_rules([path.parent / "study_rules"]))
    assert [p.message.split(":")[0] for p in info.value.problems] == ["the rules of 'site' were not loaded"]


def test_a_cohort_whose_rule_directory_holds_only_codes_checks_when_it_was_loaded(tmp_path: Path) -> None:
    path = _site_dir(tmp_path, "codes.yaml", "findings:\n  pericarditis: pericarditis\n")
    assert run_cli("cohort", "check", path).exit_code == 0


def test_a_cohort_files_rule_directory_also_given_with_rules_is_read_once(tmp_path: Path) -> None:
    path = _study(tmp_path)
    result = run_cli("cohort", "check", path, "--rules", path.parent / "study_rules")
    assert result.exit_code == 0, result.output


def test_cohort_rule_dirs_names_the_files_directories_for_python(tmp_path: Path) -> None:
    from timeline.cohort.spec import cohort_rule_dirs

    path = _study(tmp_path)
    assert cohort_rule_dirs(path) == [path.parent / "study_rules"]
    assert load_cohort(path, load_rules(cohort_rule_dirs(path))).id == "synthetic_anakinra"


def test_the_rules_option_comes_after_the_cohort_files_directories_and_overrides_them(tmp_path: Path) -> None:
    path = _study(tmp_path)
    later = tmp_path / "later"
    later.mkdir()
    text = (RULES / "has_sjia.yaml").read_text(encoding="utf-8").replace('version: "1"', 'version: "7"')
    (later / "has_sjia.yaml").write_text(text, encoding="utf-8")
    from timeline.cohort.spec import cohort_rule_dirs
    from timeline.language.loader import rule_dirs

    expected = load_rules([*cohort_rule_dirs(path), later]).rules["has_sjia"].version
    assert expected == "7"
    from cli.cohort import _dirs

    assert _dirs(path, [later]) == [path.parent / "study_rules", later]
    assert rule_dirs([str(d) for d in _dirs(path, [later])])[-1] == later


SUBGROUP_HEAD = 'cohort: c\nversion: "1"\nindex: {first: {kind: medication_start, drug: anakinra}}\n'


def test_a_sub_group_given_by_a_rule_id_alone_is_named_by_that_rule(tmp_path: Path) -> None:
    spec = load_cohort(write(tmp_path, SUBGROUP_HEAD + "subgroups: [has_sjia]\n"), rules())
    assert [(g.id, g.rule) for g in spec.subgroups] == [("has_sjia", "has_sjia")]


def test_a_sub_group_without_an_id_says_it_needs_one(tmp_path: Path) -> None:
    """Helper 40: it said "subgroup id None must be lower_snake_case"."""
    text = SUBGROUP_HEAD + "subgroups: [{none_before_index: {kind: medication_start, drug: methotrexate}}]\n"
    assert problems(tmp_path, text) == ["FILE:4:13: subgroup id missing: give it an id (e.g. id: first_line)"]


def test_confidence_intervals_default_to_95_percent_on_the_log_log_scale() -> None:
    spec = load_cohort(COHORT, rules())
    assert (spec.ci_level, spec.km_transform) == (0.95, "log-log")


def test_the_confidence_level_and_the_kaplan_meier_scale_are_read_from_the_file(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8") + "confidence: {level: 0.9, km_transform: log}\n"
    spec = load_cohort(write(tmp_path, text), rules())
    assert (spec.ci_level, spec.km_transform) == (0.9, "log")


def test_a_confidence_level_given_as_a_percentage_is_refused_at_its_line(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8") + "confidence:\n  level: 95\n"
    lines = text.count("\n")
    assert problems(tmp_path, text) == [
        f"FILE:{lines}:10: confidence.level is a proportion between 0 and 1 (0.95), not 95 (95% is level: 0.95)"
    ]


def test_an_unknown_kaplan_meier_scale_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8") + "confidence: {km_transform: loglog}\n"
    [problem] = problems(tmp_path, text)
    assert (
        "confidence.km_transform must be one of log-log, log, not 'loglog' (did you mean 'log-log'?)"
        in problem
    )


def _tte_line(extra: str) -> str:
    return COHORT.read_text(encoding="utf-8").replace("window: 3 months}", f"window: 3 months, {extra}}}")


def test_a_competing_cause_is_left_out_of_the_default_censoring(tmp_path: Path) -> None:
    spec = load_cohort(write(tmp_path, _tte_line("competing: [death]")), rules())
    tte = spec.time_to_event[0]
    assert (tte.competing, tte.censor) == (("death",), ("end_of_follow_up", "discontinuation"))


def test_a_cause_both_censored_and_competing_is_refused_at_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, _tte_line("censor: [death], competing: [death]")) == [
        "FILE:25:91: death is listed as competing: a competing event ends the patient's time as an event of its "
        "own, a censoring as if the patient were lost to follow-up; list it under one of censor and competing"
    ]


def test_an_end_of_follow_up_cannot_compete(tmp_path: Path) -> None:
    assert problems(tmp_path, _tte_line("competing: [end_of_follow_up]")) == [
        "FILE:25:94: a competing event is death or discontinuation; an end of follow-up is no event: it "
        "censors (list it under censor)"
    ]


def test_discontinuation_competing_without_a_study_drug_is_refused(tmp_path: Path) -> None:
    text = TWO_DRUGS.replace("window: 3 months}", "window: 3 months, competing: [discontinuation]}")
    assert problems(tmp_path, text + "discontinuations: false\n") == [
        "FILE:26:94: discontinuation as a competing event needs the study drug (drug: NAME, or drug: index "
        "for each patient's own), whose discontinuation date ends the patient's time"
    ]
