"""Cohort reports: a population with an index event, sub-groups, time points, outcomes at each
time point, time-to-event outcomes with Kaplan–Meier estimates, adverse events,
discontinuations and MAS episodes — every cell an n/N with its denominator defined, and every
patient's membership explainable down to the rule explanation. See ``docs/cohorts.md``.
"""

from timeline.cohort.km import Curve, kaplan_meier
from timeline.cohort.report import Cell, PatientFacts, Report, run_cohort
from timeline.cohort.spec import CohortError, CohortSpec, load_cohort

__all__ = [
    "Cell",
    "CohortError",
    "CohortSpec",
    "Curve",
    "PatientFacts",
    "Report",
    "kaplan_meier",
    "load_cohort",
    "run_cohort",
]
