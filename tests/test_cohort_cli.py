"""The cohort commands and `timeline plot`, through the real entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.cohort_support import COHORT, RULES, build_store, write
from tests.engine_support import write_rule
from tests.support import EXAMPLES, run_cli, run_cli_into_closed_pipe, valencia_module


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("cohort-cli") / "cohort.duckdb")


def cohort(*args: object, store: Path) -> tuple[int, str, str]:
    result = run_cli("cohort", *args, "--store", store, "--rules", RULES)
    return result.exit_code, result.stdout, result.stderr


def test_run_prints_n_over_n_and_the_denominator_policies(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, store=cohort_store)
    assert code == 0, err
    assert "2/4 (50%), 1 unknown" in out
    assert "followed: follow-up end on or after the time point date" in out
    assert "high-water seq 55" in out


def test_run_warns_on_stderr_naming_an_index_drug_no_event_records(
    cohort_store: Path, tmp_path: Path
) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("drug: anakinra}", "drug: anakinar}")
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, err = cohort("run", path, "--json", store=cohort_store)
    assert code == 0, err
    assert (
        "warning: the index drug 'anakinar' is not recorded for any patient in the store "
        "(did you mean 'anakinra'?)" in err
    )


def test_run_warns_on_stderr_naming_a_study_drug_no_event_records(cohort_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(COHORT.read_text(encoding="utf-8") + "drug: anakinnra\n", encoding="utf-8")
    code, _, err = cohort("run", path, store=cohort_store)
    assert code == 0, err
    assert "warning: the study drug 'anakinnra' is not recorded for any patient in the store" in err


def test_run_warns_of_a_sub_group_drug_spelt_nearly_as_a_recorded_one(
    cohort_store: Path, tmp_path: Path
) -> None:
    """Helper 49: `metotrexate` in none_before_index made every patient first-line, silently."""
    text = COHORT.read_text(encoding="utf-8").replace(
        "drug: [methotrexate, tocilizumab]", "drug: [metotrexate, emapalumab]"
    )
    code, _, err = cohort("run", write(tmp_path, text), store=cohort_store)
    assert code == 0, err
    assert (
        "warning: sub-group first_line's drug 'metotrexate' is not recorded for any patient in the store "
        "(did you mean 'methotrexate'?)" in err
    )
    assert "emapalumab" not in err  # a drug nobody had, spelt like none: a list may name it


def test_check_warns_when_death_does_not_end_follow_up(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "end: [end_of_follow_up, death]", "end: [end_of_follow_up]"
    )
    result = run_cli("cohort", "check", write(tmp_path, text), "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    assert "warning: follow_up.end does not list death" in result.stderr


def test_check_json_lists_the_warnings(tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace(
        "end: [end_of_follow_up, death]", "end: [end_of_follow_up]"
    )
    result = run_cli("cohort", "check", write(tmp_path, text), "--rules", RULES, "--json")
    assert [w[:35] for w in json.loads(result.stdout)["warnings"]] == ["follow_up.end does not list death: "]


def test_check_warns_when_the_on_drug_rule_reads_another_drug_than_the_index_drugs(tmp_path: Path) -> None:
    """Helper 49: with drug: index, on_drug_rule: on_anakinra left every tocilizumab patient
    out of the on_drug denominator, and their MAS 'off the drug'."""
    text = (
        COHORT.read_text(encoding="utf-8")
        .replace(
            "first: {kind: medication_start, drug: anakinra}",
            "first: {kind: medication_start, drug: [anakinra, tocilizumab]}",
        )
        .replace(
            "end: [end_of_follow_up, death]", "end: [end_of_follow_up, death]\n  on_drug_rule: on_study_drug"
        )
        + "drug: index\n"
    )
    result = run_cli("cohort", "check", write(tmp_path, text), "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    assert "warning: follow_up.on_drug_rule on_study_drug reads anakinra, not tocilizumab" in result.stderr


def test_run_warns_when_the_population_is_empty_naming_why(cohort_store: Path, tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("exclude: [cns_ever]", "exclude: [cns_ever, has_sjia]")
    code, _, err = cohort("run", write(tmp_path, text), store=cohort_store)
    assert code == 0, err
    assert "warning: the population is empty: none of the 6 patients with an index event is included (" in err
    assert "exclusion has_sjia true for 5" in err


def test_run_json_carries_the_manifest_and_every_cell(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, "--json", store=cohort_store)
    assert code == 0, err
    data = json.loads(out)
    assert data["manifest"]["cohort"]["sha256"]
    assert data["manifest"]["rules"]["arthritis"] == "1"
    cells = {c["cell"]: c for c in data["cells"]}
    assert cells["outcome.arthritis_followed.3_months"]["numerator_ids"] == ["P2", "P7"]
    first = data["kaplan_meier"]["afebrile"][0]
    assert {k: first[k] for k in ("days", "at_risk", "events", "censored", "survival")} == {
        "days": 0.0,
        "at_risk": 4,
        "events": 1,
        "censored": 0,
        "survival": 0.75,
    }
    # Greenwood: 0.75 · √(1 / (4 · 3)); the log-log limits hold S
    assert first["std_err"] == round(0.75 * (1 / 12) ** 0.5, 6)
    assert first["lower"] < 0.75 < first["upper"]


def test_run_writes_csv_with_the_manifest_on_top(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.csv"
    code, _, err = cohort("run", COHORT, "--csv", out, store=cohort_store)
    assert code == 0, err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# engine: ")
    rows = {r["cell"]: r for r in csv.DictReader(line for line in lines if not line.startswith("#"))}
    row = rows["outcome.arthritis_all.6_months"]
    assert (row["n"], row["n_denominator"], row["n_unknown"], row["unknown_ids"]) == ("1", "4", "2", "P3 P7")


def test_run_csv_without_ids_holds_no_patient_id(cohort_store: Path, tmp_path: Path) -> None:
    """Helper 49: --no-ids was ignored by CSV and Parquet, which still named every patient."""
    out = tmp_path / "cells.csv"
    code, _, err = cohort("run", COHORT, "--csv", out, "--no-ids", store=cohort_store)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert "n_denominator" in text
    assert not any(f"P{i}" in text for i in range(1, 8))


def test_run_parquet_without_ids_has_no_id_columns(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.parquet"
    code, _, err = cohort("run", COHORT, "--parquet", out, "--no-ids", store=cohort_store)
    assert code == 0, err
    columns = [d[0] for d in duckdb.sql(f"SELECT * FROM '{out}' LIMIT 0").description]
    assert "n_denominator" in columns and not [c for c in columns if c.endswith("_ids")]


def test_run_json_names_the_patients_a_denominator_leaves_out(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, "--json", store=cohort_store)
    assert code == 0, err
    cell = {c["cell"]: c for c in json.loads(out)["cells"]}["outcome.arthritis_on_drug.12_months"]
    assert cell["left_out_ids"] == {"anakinra discontinued": ["P2"], "follow-up ended": ["P3", "P7"]}


def test_run_csv_names_the_patients_a_denominator_leaves_out(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, "--csv", "-", store=cohort_store)
    assert code == 0, err
    rows = {
        r["cell"]: r for r in csv.DictReader(line for line in out.splitlines() if not line.startswith("#"))
    }
    assert rows["outcome.arthritis_on_drug.12_months"]["left_out_ids"] == (
        "anakinra discontinued: P2; follow-up ended: P3 P7"
    )


def test_run_table_says_how_many_each_denominator_leaves_out(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, store=cohort_store)
    assert code == 0, err
    assert "not in N: 1 anakinra discontinued, 2 follow-up ended" in out


def test_run_csv_dash_prints_the_cells_on_standard_output(cohort_store: Path, tmp_path: Path) -> None:
    code, out, err = cohort("run", COHORT, "--csv", "-", store=cohort_store)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# engine: ")
    rows = {r["cell"]: r for r in csv.DictReader(line for line in lines if not line.startswith("#"))}
    assert rows["outcome.arthritis_all.6_months"]["n_unknown"] == "2"
    assert not (Path.cwd() / "-").exists()


def test_run_refuses_csv_dash_with_json(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, "--csv", "-", "--json", store=cohort_store)
    assert code == 2
    assert "--csv - and --json" in err
    assert json.loads(out)["error"]["exit_code"] == 2  # only --json's error document


def test_run_writes_parquet_with_the_manifest_as_metadata(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.parquet"
    code, _, err = cohort("run", COHORT, "--parquet", out, store=cohort_store)
    assert code == 0, err
    row = duckdb.execute(f"SELECT n, n_denominator, text FROM '{out}' WHERE cell = 'tte.afebrile'").fetchone()
    assert row == (
        3,
        4,
        "3/4 (75%) reached; 1 not reached, 1 of them with moments the rule was unknown (might have reached it unseen)",
    )  # not an unknown outcome
    meta = duckdb.execute(f"SELECT value FROM parquet_kv_metadata('{out}') WHERE key = 'manifest'").fetchone()
    assert meta is not None and json.loads(meta[0])["high_water"] == 55


def test_patients_lists_the_ids_behind_a_cell(cohort_store: Path) -> None:
    code, out, err = cohort(
        "patients", COHORT, "--cell", "outcome.arthritis_all.6_months", "--json", store=cohort_store
    )
    assert code == 0, err
    data = json.loads(out)
    assert (data["numerator_ids"], data["unknown_ids"], data["other_ids"]) == (["P1"], ["P3", "P7"], ["P2"])


def test_patients_of_an_unknown_cell_suggests_one(cohort_store: Path) -> None:
    code, _, err = cohort("patients", COHORT, "--cell", "outcome.arthritis_all.3_month", store=cohort_store)
    assert code == 2
    assert "did you mean 'outcome.arthritis_all.3_months'" in err


def test_explain_says_why_a_patient_is_not_in_the_population(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "P5", store=cohort_store)
    assert code == 0, err
    assert "P5 in cohort synthetic_anakinra: not included" in out
    assert "exclude cns_ever at 2009-01-15: true" in out


def test_explain_of_a_patient_without_an_index_says_the_population_rules_were_not_evaluated(
    cohort_store: Path,
) -> None:
    code, out, err = cohort("explain", COHORT, "P6", store=cohort_store)
    assert code == 0, err
    assert "  include has_sjia: not evaluated (no index event)\n" in out
    assert "None" not in out


def test_explain_says_why_a_patient_outside_the_population_is_in_no_sub_group(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "P5", store=cohort_store)
    assert code == 0, err
    assert "sub-group first_line: not a member (not evaluated: not in the population)" in out


def test_explain_a_discontinuation_cell_describes_the_stop_in_words(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "P2", "discontinuation.any", store=cohort_store)
    assert code == 0, err
    assert "  detail: discontinued 2009-10-15 (severe skin reaction); events p2-stop\n" in out


def test_explain_an_adverse_event_cell_lists_each_event_in_words(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "P2", "ae.skin_reaction.grade_3", store=cohort_store)
    assert code == 0, err
    assert "  p2-ae1 2009-10-10: skin reaction, grade 3\n" in out


def test_explain_an_adverse_event_cell_lists_only_the_events_it_counts_beside_the_discontinuation(
    tmp_path: Path,
) -> None:
    """P2 with an otitis media after its skin reaction: the skin reaction's cell lists the skin
    reaction alone, and says when anakinra was discontinued."""
    from timeline.ingest import append_rows
    from timeline.store import Store

    store = build_store(tmp_path / "s.duckdb")
    with Store.open(store, write=True) as s:
        append_rows(s, [{"patient_id": "P2", "kind": "adverse_event", "occurred_at": "2009-06-01",
                         "term": "otitis media", "grade": 2}], author="t", source="test")  # fmt: skip
    code, out, err = cohort("explain", COHORT, "P2", "ae.skin_reaction.grade_3", "--json", store=store)
    assert code == 0, err
    cell = json.loads(out)["cell"]
    assert [ae["event_id"] for ae in cell["events"]] == ["p2-ae1"]
    assert cell["detail"] == "anakinra discontinued 2009-10-15 (severe skin reaction)"


@pytest.mark.parametrize(
    ("patient", "cell_id", "role"),
    [
        # another patient's AE row: P1 is in its denominator, the group
        ("P1", "ae.skin_reaction.grade_3", "denominator only: the patient has no such events"),
        # P2 started methotrexate before anakinra: not first line, not in the sub-group's row
        (
            "P2",
            "ae.injection_site_reaction.grade_1@first_line",
            "not in the denominator: the patient has no such events",
        ),
    ],
)
def test_explain_of_an_adverse_event_row_the_patient_lacks_gives_their_role_in_it(
    cohort_store: Path, patient: str, cell_id: str, role: str
) -> None:
    code, out, err = cohort("explain", COHORT, patient, cell_id, store=cohort_store)
    assert code == 0, err
    assert f"{cell_id}: {role}" in out


@pytest.mark.parametrize(
    ("cell_id", "why"),
    [
        ("ae.skin_reactoin.grade_3", "no adverse event of the store has this term and grade"),
        ("ae.skin_reaction.grade_4", "no adverse event of the store has this term and grade"),
        ("discontinuation.boredom", "no discontinuation or stop in the store gives this reason"),
        ("mas.during_drug", "not a MAS row"),
        ("ae.skin_reaction.grade_3@first_lin", "no sub-group 'first_lin'"),
    ],
)
def test_explain_refuses_a_row_no_patient_of_the_store_could_have(
    cohort_store: Path, cell_id: str, why: str
) -> None:
    code, out, err = cohort("explain", COHORT, "P1", cell_id, store=cohort_store)
    assert code == 2
    assert f"error: no cell {cell_id!r} in this report: {why}" in err
    assert out == ""


def test_explain_suggests_the_row_a_misspelt_adverse_event_id_meant(cohort_store: Path) -> None:
    _, _, err = cohort("explain", COHORT, "P1", "ae.skin_reactoin.grade_3", store=cohort_store)
    assert "(did you mean 'ae.skin_reaction.grade_3'?)" in err


def test_explain_a_cell_names_the_rule_explanation(cohort_store: Path) -> None:
    code, out, err = cohort(
        "explain", COHORT, "P7", "outcome.arthritis_all.6_months", "--json", store=cohort_store
    )
    assert code == 0, err
    cell = json.loads(out)["cell"]
    assert cell["role"].startswith("unknown")
    tree = cell["explanations"][0]["explanation"]["tree"]
    assert tree["rule"] == "arthritis@1"
    assert "too old" in tree["reason"]
    assert cell["explanations"][0]["explanation"]["instant"] == "2010-07-01T23:59:59.999999Z"


def test_explain_a_denominator_gives_the_policy_detail(cohort_store: Path) -> None:
    code, out, err = cohort(
        "explain", COHORT, "P2", "outcome.arthritis_on_drug.12_months", store=cohort_store
    )
    assert code == 0, err
    assert "not in the denominator" in out
    assert "anakinra stopped 2009-10-15 (severe skin reaction)" in out


def test_explain_time_to_event_at_the_first_instant(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "P1", "tte.afebrile", "--json", store=cohort_store)
    assert code == 0, err
    cell = json.loads(out)["cell"]
    assert cell["detail"].startswith("reached 19 days after the index (2009-01-20T00:00:00)")
    assert cell["explanations"][0]["explanation"]["tree"]["value"] is True


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_cohort_plot_writes_a_non_empty_image(cohort_store: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"cohort{suffix}"
    code, _, err = cohort("plot", COHORT, "--out", out, store=cohort_store)
    assert code == 0, err
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_patient_plot_writes_a_non_empty_image(cohort_store: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"p2{suffix}"
    result = run_cli("plot", "P2", "--out", out, "--store", cohort_store, "--rules", RULES,
                     "--lane", "afebrile_week", "--lane", "arthritis", "--lane", "on_study_drug")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000


def test_a_plots_lane_draws_unknown_then_false_then_true_one_call_each(
    cohort_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane's bars: one call per kind of value (matplotlib's cost is per call), true drawn last
    so that a short true stretch is never under its neighbours' edges."""
    from matplotlib.axes import Axes

    from timeline import plots

    calls: list[tuple[float, str]] = []
    barh = Axes.barh

    def recording(self: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(y, list):  # a lane's (the MAS episodes' bars are one each)
            calls.append((y[0], kwargs["color"]))
        return barh(self, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "barh", recording)
    result = run_cli("plot", "P2", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES,
                     "--lane", "afebrile_week", "--lane", "arthritis")  # fmt: skip
    assert result.exit_code == 0, result.output
    rank = {plots._UNKNOWN: 0, plots._FALSE: 1}
    for lane in {y for y, _ in calls}:
        kinds = [rank.get(colour, 2) for y, colour in calls if y == lane]
        assert kinds == sorted(set(kinds)), (lane, kinds)
    assert len({y for y, _ in calls}) == 2 and any(rank.get(c, 2) == 2 for _, c in calls)


def test_plot_labels_the_dose_axis_with_the_unit_the_dose_rule_declares(
    cohort_store: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "dose"
    rules.mkdir()
    (rules / "anakinra_mg_day.yaml").write_text(
        "id: anakinra_mg_day\nversion: '1'\ndescription: d\ncitation: c\nunit: mg/d\n"
        "define:\n  daily_dose: {drug: anakinra, per_kg: false}\n",
        encoding="utf-8",
    )
    result = run_cli("plot", "P2", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES,
                     "--rules", rules, "--dose-rule", "anakinra_mg_day", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dose_axis"] == "mg/d"


def test_plot_draws_a_lane_that_is_not_a_disease_state_in_a_neutral_colour(
    cohort_store: Path, tmp_path: Path
) -> None:
    result = run_cli("plot", "P2", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES,
                     "--lane", "on_study_drug", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lane_meanings"] == {"on_study_drug": "other"}


@pytest.mark.parametrize(
    ("rule_id", "meaning"),
    [("active_arthritis", "disease"), ("in_mas_episode", "disease"), ("rash_free", "good"),
     ("inactive_disease", "good"), ("on_tocilizumab", "other"), ("under_30kg", "other")],
)  # fmt: skip
def test_a_lanes_colour_follows_what_its_truth_means(rule_id: str, meaning: str) -> None:
    from timeline.plots import lane_meaning

    assert lane_meaning(rule_id) == meaning


def test_a_rules_declared_meaning_colours_its_lane_whatever_its_id_says(
    cohort_store: Path, tmp_path: Path
) -> None:
    """`fever_controlled` reads as disease by its words (fever); it declares good news."""
    own = tmp_path / "own"
    write_rule(own, "fever_controlled", {"not": {"rule": "arthritis"}}, meaning="good")
    result = run_cli("plot", "P2", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES,
                     "--rules", own, "--lane", "fever_controlled", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lane_meanings"] == {"fever_controlled": "good"}
    assert json.loads(result.stdout)["lane_meaning_from"] == {"fever_controlled": "meaning"}


def test_plot_refuses_an_unknown_image_format(cohort_store: Path, tmp_path: Path) -> None:
    result = run_cli("plot", "P2", "--out", tmp_path / "p2.pdf", "--store", cohort_store, "--rules", RULES)
    assert result.exit_code == 2
    assert "give a .png or .svg file name" in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--lane", "age_at"), "a swimlane needs a boolean rule"),
        (("--dose-rule", "arthritis"), "--dose-rule arthritis: the dose panel needs a numeric rule"),
        (("--dose-rule", "nope"), "unknown rule 'nope'"),
    ],
    ids=["lane-numeric", "dose-rule-boolean", "dose-rule-unknown"],
)
def test_plot_refuses_a_rule_of_the_wrong_kind_for_its_panel(
    cohort_store: Path, tmp_path: Path, option: tuple[str, str], message: str
) -> None:
    result = run_cli(
        "plot", "P2", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES, *option
    )
    assert result.exit_code == 2
    assert message in result.stderr


def test_explain_shows_at_a_time_point_only_the_outcomes_reported_there(
    cohort_store: Path, tmp_path: Path
) -> None:
    text = (
        COHORT.read_text(encoding="utf-8")
        .replace("denominator: all}", "denominator: all, at: [6 months]}")
        .replace(
            "  - {id: arthritis_followed, rule: arthritis, label: Active arthritis, denominator: followed}\n",
            "",
        )
    )
    text = text.replace(
        "  - {id: arthritis_on_drug, rule: arthritis, label: Active arthritis, denominator: on_drug}\n", ""
    )
    spec = tmp_path / "cohort.yaml"
    spec.write_text(text, encoding="utf-8")
    code, out, err = cohort("explain", spec, "P1", "--json", store=cohort_store)
    assert code == 0, err
    shown = {tp["time_point"]: sorted(tp["values"]) for tp in json.loads(out)["time_points"]}
    assert shown == {"3 months": [], "6 months": ["arthritis"], "12 months": []}


def test_plot_of_a_patient_with_only_a_birth_date_says_there_is_nothing_to_plot(
    cohort_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.duckdb"
    store.write_bytes(cohort_store.read_bytes())
    born = tmp_path / "b.csv"
    born.write_text("patient_id,kind,occurred_at,sex\nB1,birth,2001-01-01,female\n", encoding="utf-8")
    assert run_cli("ingest", born, "--store", store, "--author", "t").exit_code == 0
    result = run_cli("plot", "B1", "--out", tmp_path / "b.png", "--store", store, "--rules", RULES)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: patient 'B1' has only a birth date in {store}: nothing to plot"


def test_plot_of_an_unknown_patient_exits_5(cohort_store: Path, tmp_path: Path) -> None:
    result = run_cli("plot", "NOPE", "--out", tmp_path / "p.png", "--store", cohort_store, "--rules", RULES)
    assert result.exit_code == 5
    assert "patient 'NOPE' has no events" in result.stderr


def test_plot_into_a_path_under_a_file_is_an_error_naming_it(cohort_store: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file", encoding="utf-8")
    out = tmp_path / "f" / "p.png"
    result = run_cli("plot", "P2", "--out", out, "--store", cohort_store, "--rules", RULES)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot write {out}: Not a directory"


@pytest.mark.parametrize("option", ["--csv", "--parquet"])
def test_cohort_run_refuses_an_output_in_a_missing_directory_before_running(
    cohort_store: Path, tmp_path: Path, option: str
) -> None:
    out = tmp_path / "nodir" / "cells"
    code, _, err = cohort("run", COHORT, option, out, store=cohort_store)
    assert code == 2
    assert err.strip() == f"error: {option} {out}: directory {out.parent} does not exist"


def test_cohort_run_refuses_a_directory_as_its_output(cohort_store: Path, tmp_path: Path) -> None:
    code, _, err = cohort("run", COHORT, "--csv", tmp_path, store=cohort_store)
    assert code == 2
    assert err.strip() == f"error: --csv {tmp_path} is a directory"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_cohort_run_names_an_output_it_cannot_write(cohort_store: Path) -> None:
    code, _, err = cohort("run", COHORT, "--csv", "/dev/full", store=cohort_store)
    assert code == 1
    assert err.strip() == "error: cannot write /dev/full: No space left on device"
    assert Path("/dev/full").is_char_device()  # written as it is, never replaced by a file


def test_cohort_explain_of_an_unknown_patient_exits_5(cohort_store: Path) -> None:
    code, out, err = cohort("explain", COHORT, "NOPE", store=cohort_store)
    assert code == 5
    assert "patient 'NOPE' has no events" in err
    assert out == ""


def test_the_numbers_at_risk_keep_the_last_tick_when_thinned() -> None:
    from timeline.plots import at_risk_ticks

    ticks = [float(t) for t in range(0, 400, 50)]  # 0 … 350: eight ticks, room for seven
    kept = at_risk_ticks(ticks)
    assert kept[0] == 0 and kept[-1] == 350 and len(kept) <= 7


def test_the_numbers_at_risk_keep_every_tick_that_fits() -> None:
    from timeline.plots import at_risk_ticks

    assert at_risk_ticks([0.0, 100.0, 200.0]) == [0.0, 100.0, 200.0]


def test_run_refuses_parquet_to_standard_output(cohort_store: Path) -> None:
    code, _, err = cohort("run", COHORT, "--parquet", "-", store=cohort_store)
    assert code == 2
    assert "--parquet -: only --csv can print to standard output" in err
    assert not (Path.cwd() / "-").exists()


def test_run_replaces_an_existing_csv_whole_and_leaves_no_temporary_file(
    cohort_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cells.csv"
    out.write_text("old\n", encoding="utf-8")
    code, _, err = cohort("run", COHORT, "--csv", out, store=cohort_store)
    assert code == 0, err
    assert out.read_text(encoding="utf-8").startswith("# engine: ")
    assert [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


def test_run_csv_to_a_closed_pipe_ends_silently_with_exit_141(cohort_store: Path) -> None:
    # `cohort run FILE --csv - | head -1`; before: exit 1
    result = run_cli_into_closed_pipe(
        "cohort", "run", COHORT, "--csv", "-", "--store", cohort_store, "--rules", RULES
    )
    assert (result.exit_code, result.stderr) == (141, "")


@pytest.mark.parametrize(
    "command",
    [("cohort", "run", COHORT, "--csv"), ("cohort", "run", COHORT, "--parquet"), ("plot", "P2", "--out")],
    ids=["csv", "parquet", "plot"],
)
def test_an_output_name_too_long_is_a_bad_command_line_naming_it(
    cohort_store: Path, tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    out = tmp_path / ("a" * 300 + (".png" if command[0] == "plot" else ".out"))
    result = run_cli(*command, out, "--store", cohort_store, "--rules", RULES)
    # before: "internal error: OSError: [Errno 36] File name too long", exit 70 (cohort run);
    # "cannot write …", exit 1, once the plot was drawn
    assert (result.exit_code, result.stderr) == (2, f"error: {out}: File name too long\n")


def test_every_one_of_25_series_of_a_cohort_plot_is_drawn_alike_to_no_other() -> None:
    from timeline.plots import series_style

    styles = [series_style(i) for i in range(25)]
    assert len({(colour, mark, str(line)) for colour, mark, line in styles}) == 25
    marks = {(mark, str(line)) for _, mark, line in styles}
    assert len(marks) == 5  # the series of one colour differ in marker and line


def test_a_time_to_event_summary_says_1_day_not_1_days() -> None:
    """Helper 42: "censored by end_of_follow_up after 1 days"."""
    from cli.cohort import _tte_text
    from timeline.cohort.report import Cell

    x = Cell(id="tte.t", section="time_to_event", row="t", column="", group="all", label="t", denominator="d",
             n=1, N=2, stats={"km_pct_by_window_end": 50.0, "km_median_days": 1.0})  # fmt: skip
    assert _tte_text(x) == "1/2 reached; KM 50% by the window end; median 1 day"


def test_a_time_to_event_summary_gives_each_limit_or_na() -> None:
    from cli.cohort import _tte_text
    from timeline.cohort.report import Cell

    x = Cell(id="tte.t", section="time_to_event", row="t", column="", group="all", label="t", denominator="d",
             n=1, N=2, stats={"km_pct_by_window_end": 50.0, "km_median_days": 1.0, "ci_level": 0.9,
                              "km_pct_by_window_end_ci": [10.2, 89.8], "km_median_days_ci": [1.0, None]})  # fmt: skip
    assert (
        _tte_text(x)
        == "1/2 reached; KM 50% (90% CI 10.2–89.8%) by the window end; median 1 day (90% CI 1–NA)"
    )


def test_explain_a_mas_cell_lists_each_episodes_events_and_how_its_drug_relation_was_decided(
    cohort_store: Path,
) -> None:
    """Helper 46: an episode showed only 'evidence seq 24'."""
    code, out, err = cohort("explain", COHORT, "P2", "mas.on_drug", store=cohort_store)
    assert code == 0, err
    assert "    seq 24 p2-mas1 2009-06-01: MAS episode until 2009-06-20\n" in out
    assert (
        "    on drug: after the index (2009-03-01T00:00:00) and before the discontinuation: anakinra discontinued 2009-10-15\n"
        in out
    )


# ---- confidence intervals, rates, and the CSV in DuckDB ---------------------------------------


def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``sql`` on a connection of its own."""
    with duckdb.connect() as con:
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()


def test_run_prints_the_kaplan_meier_intervals_and_the_rates_with_their_exposure(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, store=cohort_store)
    assert code == 0, err
    # the table wraps its cells: pieces that stay on one line
    assert (
        "KM 75%" in out
        and "(95% CI 33.5–99.1%) by the window end; median 32 days" in out
        and "CI 0–NA)" in out
    )
    assert "exposure: patient-years of follow-up (index to end of follow-up)" in out
    assert "4.0 patient-years (4 patients)" in out


def test_run_csv_reads_in_duckdb_with_comment_hash(cohort_store: Path, tmp_path: Path) -> None:
    """The call docs/cohorts.md gives: DuckDB skips the manifest and reads every cell, typed."""
    out = tmp_path / "cells.csv"
    code, _, err = cohort("run", COHORT, "--csv", out, store=cohort_store)
    assert code == 0, err
    _, js, _ = cohort("run", COHORT, "--json", store=cohort_store)
    cells = {c["cell"]: c for c in json.loads(js)["cells"]}
    columns, found = query(f"SELECT * FROM read_csv('{out}', comment = '#')")
    rows = {r[0]: dict(zip(columns, r, strict=True)) for r in found}
    assert rows.keys() == cells.keys()
    assert all(
        (r["n"], r["n_denominator"], r["text"]) == (cells[c]["n"], cells[c]["N"], cells[c]["text"])
        for c, r in rows.items()
    )
    tte, ae = rows["tte.afebrile"], rows["ae.any.any_grade"]
    assert [tte["km_pct_lower"], tte["km_pct_upper"]] == cells["tte.afebrile"]["stats"][
        "km_pct_by_window_end_ci"
    ]
    assert (ae["events"], ae["per_100_patient_years_upper"]) == (
        2,
        cells["ae.any.any_grade"]["stats"]["per_100_patient_years_ci"][1],
    )


def test_a_hash_inside_a_csv_text_field_survives_duckdbs_comment_skipping(
    cohort_store: Path, tmp_path: Path
) -> None:
    """DuckDB's comment='#' cuts an unquoted field at a '#' (the row 1,x #2 y,3 came back as
    "1,x "): every text field is quoted."""
    from cli.cohort import _csv
    from tests.cohort_support import run

    report = run(cohort_store)
    report.cells[0].label = "grade #2, or # 3"
    out = tmp_path / "cells.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        _csv(report, fh)
    _, labels = query(f"SELECT label FROM read_csv('{out}', comment = '#')")
    assert labels[0] == ("grade #2, or # 3",) and len(labels) == len(report.cells)


def test_run_csv_manifest_goes_to_a_sidecar_file(cohort_store: Path, tmp_path: Path) -> None:
    out, manifest = tmp_path / "cells.csv", tmp_path / "cells.manifest.json"
    code, _, err = cohort("run", COHORT, "--csv", out, "--manifest", manifest, store=cohort_store)
    assert code == 0, err
    assert not out.read_text(encoding="utf-8").startswith("#")
    assert json.loads(manifest.read_text(encoding="utf-8"))["high_water"] == 55
    assert query(f"SELECT count(*) FROM read_csv('{out}')")[1] == [
        (len(json.loads(cohort("run", COHORT, "--json", store=cohort_store)[1])["cells"]),)
    ]


def test_run_refuses_a_manifest_file_without_csv(cohort_store: Path, tmp_path: Path) -> None:
    code, _, err = cohort("run", COHORT, "--manifest", tmp_path / "m.json", store=cohort_store)
    assert code == 2
    assert err.strip() == (
        "error: --manifest writes the CSV's manifest apart: it goes with --csv (JSON and Parquet carry theirs)"
    )


def test_run_parquet_types_the_interval_columns(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.parquet"
    code, _, err = cohort("run", COHORT, "--parquet", out, store=cohort_store)
    assert code == 0, err
    types = dict(query(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{out}')")[1])
    assert (types["km_median_days_lower"], types["per_100_patient_years_upper"], types["events"]) == (
        "DOUBLE",
        "DOUBLE",
        "INTEGER",
    )


def test_run_csv_counts_no_unknown_in_a_time_to_event_row_but_its_not_reached_apart(
    cohort_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cells.csv"
    code, _, err = cohort("run", COHORT, "--csv", out, "--manifest", tmp_path / "m.json", store=cohort_store)
    assert code == 0, err
    row = next(r for r in csv.DictReader(out.open(encoding="utf-8")) if r["cell"] == "tte.afebrile")
    assert (row["n_unknown"], row["n_not_reached"], row["n_not_reached_with_unknown_moments"]) == (
        "0",
        "1",
        "1",
    )
    assert row["not_reached_with_unknown_moments_ids"] == "P3"


def test_run_csv_gives_an_outcome_rows_reasons_for_unknown(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.csv"
    code, _, err = cohort("run", COHORT, "--csv", out, "--manifest", tmp_path / "m.json", store=cohort_store)
    assert code == 0, err
    row = next(
        r for r in csv.DictReader(out.open(encoding="utf-8")) if r["cell"] == "outcome.arthritis_all.6_months"
    )
    assert row["unknown_reasons"] == "no joint exam within 90 days (an older one recorded) (2)"


def test_run_json_gives_a_time_to_event_cells_not_reached_apart_from_unknown(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, "--json", store=cohort_store)
    assert code == 0, err
    c = next(c for c in json.loads(out)["cells"] if c["cell"] == "tte.afebrile")
    assert (c["unknown"], c["not_reached"], c["not_reached_with_unknown_moments"]) == (0, 1, 1)


def test_run_table_footnotes_the_reasons_for_an_outcome_rows_unknowns(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, store=cohort_store)
    assert code == 0, err
    assert (
        "Active arthritis: every unknown is 'no joint exam within 90 days (an older one recorded)'"
        in " ".join(out.split())
    )


def test_run_table_says_how_a_time_to_event_row_treats_a_discontinuation(cohort_store: Path) -> None:
    code, out, err = cohort("run", COHORT, store=cohort_store)
    assert code == 0, err
    assert "[1] Fever resolved: a discontinuation of anakinra censors" in " ".join(out.split())


def test_run_header_names_a_parameter_set_by_param(tmp_path: Path) -> None:
    store = tmp_path / "v.duckdb"
    valencia_module("load").load(store)
    result = run_cli(
        "cohort",
        "run",
        EXAMPLES / "valencia" / "cohort.yaml",
        "--store",
        store,
        "--param",
        "crp_normal.upper=10",
    )
    assert result.exit_code == 0, result.stderr
    assert "changed from the rule files: crp_normal.upper = 10 mg/L (default 6 mg/L)" in " ".join(
        result.stdout.split()
    )


def test_run_before_the_stores_first_batch_says_the_store_held_no_events_then(cohort_store: Path) -> None:
    code, _, err = cohort("run", COHORT, "--as-known-at", "2000-01-31", store=cohort_store)
    assert code == 0, err
    assert "the store held no events as known at 2000-01-31" in " ".join(err.split())


def test_run_before_the_stores_first_batch_does_not_warn_of_an_absent_drug(cohort_store: Path) -> None:
    code, _, err = cohort("run", COHORT, "--as-known-at", "seq:0", store=cohort_store)
    assert code == 0, err
    assert "not recorded for any patient" not in err and "population is empty" not in err


def test_check_with_a_store_gives_the_warnings_of_its_data(cohort_store: Path, tmp_path: Path) -> None:
    text = COHORT.read_text(encoding="utf-8").replace("drug: anakinra}", "drug: anakinar}")
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, err = cohort("check", path, store=cohort_store)
    assert code == 0, err
    assert "the index drug 'anakinar' is not recorded for any patient" in err


def test_run_help_says_as_known_at_is_the_recording_time_not_a_clinical_date() -> None:
    result = run_cli("cohort", "run", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "not a clinical cut-off date" in text and "--as-known-at seq:3470" in text


def test_explain_as_known_at_marks_evidence_corrected_after_that_moment_as_explain_does(
    tmp_path: Path,
) -> None:
    """Helper 63's finding 2: `cohort explain --as-known-at` listed the evidence without the
    remark `timeline explain` gives (and its --json carried)."""
    store = build_store(tmp_path / "s.duckdb")  # seqs 1-55
    run_cli(
        "correct",
        "p1-j3",
        "--set",
        "active_joints=2",
        "--reason",
        "recount",
        "--author",
        "t",
        "--store",
        store,
    )
    code, out, err = cohort(
        "explain", COHORT, "P1", "outcome.arthritis_all.6_months", "--as-known-at", "seq:55", store=store
    )
    assert code == 0, err
    assert "seq 10 p1-j3 2009-06-20: 1 active joints [corrected after this moment (seq 56: recount)]" in out
