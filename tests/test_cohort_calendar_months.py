"""A cohort whose rule compares `time_since` in months or years with a time point's length is
warned: time_since counts mean months (days / 30.4375), a time point is calendar months after
the index, so "≥ 6 months since the first dose" can be false at the 6-month time point
(helper 62, finding 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cohort_support import COHORT, RULES, write
from tests.engine_support import write_rule
from timeline.cohort.report import design_warnings
from timeline.cohort.spec import load_cohort
from timeline.language.loader import load_rules

FIRST_DOSE = {"first": {"kind": "medication_start", "drug": "anakinra"}}


def since(unit: str, threshold: Any, op: str = "ge", **extra: Any) -> dict[str, Any]:
    return {op: [{"time_since": {**FIRST_DOSE, "unit": unit}}, threshold], **extra}


def warnings_for(
    tmp_path: Path, define: dict[str, Any], *, tte_window: str | None = None, **rule: Any
) -> list[str]:
    """The design warnings of the fixture cohort with an outcome (or a time-to-event outcome
    with ``tte_window``) reading a rule ``on_long`` of ``define``."""
    write_rule(tmp_path / "own", "on_long", define, **rule)
    text = COHORT.read_text(encoding="utf-8")
    if tte_window is None:
        text = text.replace("outcomes:\n", "outcomes:\n  - {id: long, rule: on_long, label: long on}\n")
    else:
        text = text.replace(
            "time_to_event:\n",
            f"time_to_event:\n  - {{id: long, rule: on_long, label: long, window: {tte_window}}}\n",
        )
    rules = load_rules([RULES, tmp_path / "own"])
    return [w for w in design_warnings(load_cohort(write(tmp_path, text), rules), rules) if "time_since" in w]


def test_a_time_since_in_months_compared_with_a_time_points_length_is_warned_of(tmp_path: Path) -> None:
    (warning,) = warnings_for(tmp_path, since("months", {"param": "n"}), params={"n": {"default": 6}})
    assert warning == (
        "outcome long: on_long compares time_since in months with 6, as long as 6 months; but time_since "
        "counts mean months (6 months = 182.625 days) and 6 months after the index is 181–184 days on the "
        "calendar: at 6 months the comparison can fail for a patient who has reached it. For calendar months, "
        "compare time_since in days with 181 (docs/cohorts.md, Time)"
    )


def test_a_time_since_in_years_compared_with_a_time_point_in_months_is_warned_of(tmp_path: Path) -> None:
    (warning,) = warnings_for(tmp_path, since("years", 1))
    assert warning.startswith(
        "outcome long: on_long compares time_since in years with 1, as long as 12 months;"
    )


def test_a_time_since_threshold_that_is_no_time_points_length_is_not_warned_of(tmp_path: Path) -> None:
    assert warnings_for(tmp_path, since("months", 5)) == []


def test_a_time_since_in_days_is_not_warned_of(tmp_path: Path) -> None:
    assert warnings_for(tmp_path, since("days", 182)) == []


def test_a_time_to_event_rule_compared_with_its_windows_length_is_warned_of(tmp_path: Path) -> None:
    (warning,) = warnings_for(tmp_path, since("months", 2), tte_window="2 months")
    assert warning.startswith(
        "time-to-event outcome long (window 2 months): on_long compares time_since in months"
    )
