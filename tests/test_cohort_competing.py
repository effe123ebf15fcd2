"""Time to event with competing events (`competing:` in a cohort file), on the Valencia study:
complete response within 12 months with a stop of anakinra as a competing event."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import EXAMPLES, run_cli, valencia_module
from timeline.cohort.report import Report, run_cohort
from timeline.cohort.spec import load_cohort
from timeline.engine.evaluate import Session
from timeline.language.loader import load_rules
from timeline.store import Store

COMPETING_ITEM = """  - id: complete_response_competing
    rule: complete_response
    label: Complete response, a stop competing
    window: 12 months
    censor: [end_of_follow_up]
    competing: [death, discontinuation]
"""
CELL = "tte.complete_response_competing"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("valencia-competing")
    store = root / "valencia.duckdb"
    valencia_module("load").load(store)
    text = (EXAMPLES / "valencia" / "cohort.yaml").read_text(encoding="utf-8")
    assert "\nadverse_events: true" in text
    cohort = root / "cohort.yaml"
    cohort.write_text(
        text.replace("\nadverse_events: true", "\n" + COMPETING_ITEM + "\nadverse_events: true", 1)
    )
    return store, cohort


@pytest.fixture(scope="module")
def report(files: tuple[Path, Path]) -> Report:
    store, cohort = files
    rules = load_rules()
    with Store.open(store) as s:
        return run_cohort(Session(s, rules), load_cohort(cohort, rules))


def test_the_three_children_who_stopped_anakinra_end_as_competing_events(report: Report) -> None:
    competing = sorted(
        p
        for p, f in report.patients.items()
        if "complete_response_competing" in f.tte and f.tte["complete_response_competing"].competing
    )
    assert competing == ["V06", "V15", "V18"]


def test_the_row_counts_its_competing_events_by_cause(report: Report) -> None:
    stats = report.cell(CELL).stats
    assert (stats["estimator"], stats["competing"]) == ("aalen-johansen", {"discontinuation": 3})


def test_with_no_one_censored_before_the_window_end_the_incidence_is_the_count(report: Report) -> None:
    # 16 of 22 reached complete response; no end of follow-up before 12 months
    c = report.cell(CELL)
    assert (c.n, c.N, c.stats["cif_pct_by_window_end"]) == (16, 22, 72.7)


def test_the_incidence_has_a_log_log_interval_around_it(report: Report) -> None:
    low, high = report.cell(CELL).stats["cif_pct_by_window_end_ci"]
    assert low < 72.7 < high


def test_an_item_without_competing_events_has_no_incidence_fields(report: Report) -> None:
    assert "estimator" not in report.cell("tte.complete_response").stats


def test_the_json_carries_every_step_of_the_cumulative_incidence(report: Report) -> None:
    steps = report.to_json(ids=False)["cumulative_incidence"]["complete_response_competing"]
    assert sum(s["events"] for s in steps) == 16
    assert sum(s["competing"] for s in steps) == 3


def test_the_methods_name_the_incidence_interval(report: Report) -> None:
    assert "Aalen-Johansen" in report.to_json(ids=False)["methods"]["cumulative_incidence_ci"]


def test_the_row_prints_the_cumulative_incidence_not_kaplan_meier(report: Report) -> None:
    from cli.cohort import _tte_text

    text = _tte_text(report.cell(CELL))
    assert "cumulative incidence (Aalen–Johansen) 72.7% (95% CI" in text
    assert "KM" not in text


def test_the_table_title_names_the_estimator_of_competing_events(files: tuple[Path, Path]) -> None:
    store, cohort = files
    result = run_cli("cohort", "run", cohort, "--store", store)
    assert result.exit_code == 0, result.stderr
    assert (
        "Time to event (from the index; Kaplan–Meier; Aalen–Johansen where there are competing events)"
        in (result.stdout)
    )


def test_the_csv_has_the_incidence_columns_for_that_row_only(files: tuple[Path, Path]) -> None:
    store, cohort = files
    result = run_cli("cohort", "run", cohort, "--store", store, "--csv", "-", "--no-ids")
    assert result.exit_code == 0, result.stderr
    rows = {
        r["cell"]: r
        for r in csv.DictReader(
            io.StringIO("".join(x for x in result.stdout.splitlines(True) if not x.startswith("#")))
        )
    }
    assert (rows[CELL]["cif_pct"], rows["tte.complete_response"]["cif_pct"]) == ("72.7", "")


def test_cohort_explain_names_the_competing_event(files: tuple[Path, Path]) -> None:
    store, cohort = files
    result = run_cli("cohort", "explain", cohort, "V06", "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    tte: dict[str, Any] = json.loads(result.stdout)["time_to_event"]["complete_response_competing"]
    assert (tte["reached"], tte["censored_by"], tte["competing"]) == (False, "discontinuation", True)


def test_the_plot_draws_the_cumulative_incidence_for_that_item(report: Report) -> None:
    from timeline.plots import _reached

    key = ("complete_response_competing", "all")
    steps = _reached(report.curves[key], report.incidence[key], 0.95, "log-log")
    assert steps[-1][1] == pytest.approx(100 * report.incidence[key].steps[-1].incidence)


def test_cohort_plot_of_a_file_with_competing_events_writes_an_image(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    store, cohort = files
    out = tmp_path / "curves.png"
    result = run_cli("cohort", "plot", cohort, "--out", out, "--store", store)
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size > 0
