"""Shared by the cohort tests: the synthetic cohort (tests/fixtures/cohort) and its rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timeline.cohort.report import Report, run_cohort
from timeline.cohort.spec import CohortSpec, load_cohort
from timeline.engine.evaluate import Session
from timeline.ingest import ingest_file
from timeline.language.loader import RuleSet, load_rules
from timeline.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RULES = FIXTURES / "cohort_rules"
COHORT = FIXTURES / "cohort" / "cohort.yaml"
EVENTS = FIXTURES / "cohort" / "events.csv"


# the incidence rate an AE or discontinuation cell carries beside its counts
RATE_KEYS = (
    "exposure",
    "exposure_patient_years",
    "per_100_patient_years",
    "per_100_patient_years_ci",
    "ci_level",
)


def counts(stats: dict[str, Any]) -> dict[str, Any]:
    """A cell's stats without its incidence rate (the rates are tested on their own)."""
    return {k: v for k, v in stats.items() if k not in RATE_KEYS}


def rules() -> RuleSet:
    """Only the fixture rules: the tests do not depend on the built-in pack."""
    return load_rules([RULES])


def build_store(path: Path) -> Path:
    with Store.create(path) as s:
        ingest_file(s, EVENTS, author="cohort tests")
    return path


def write(tmp: Path, text: str, name: str = "cohort.yaml") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def run(store_path: Path, cohort: Path = COHORT, ruleset: RuleSet | None = None) -> Report:
    rs = ruleset or rules()
    spec: CohortSpec = load_cohort(cohort, rs)
    with Store.open(store_path) as s:
        return run_cohort(Session(s, rs), spec)
