"""Run a cohort over a store: population, index, sub-groups, time points, outcomes, time to
event, adverse events, discontinuations and MAS episodes — every cell an n/N with its
denominator defined and the patient ids behind it.

Rules are evaluated set-based: one :meth:`Session.evaluate` call for every rule the
population needs at every patient's index, one for every outcome at every (patient, time
point), and one compiled query per time-to-event outcome over the rule's change points.
Python only aggregates the per-patient answers into cells.
"""

from __future__ import annotations

import gc
import math
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from timeline.cohort.cif import CENSORED, COMPETING, EVENT, CifCurve, aalen_johansen
from timeline.cohort.km import Curve, kaplan_meier
from timeline.cohort.rates import incidence_rate
from timeline.cohort.spec import CohortSpec, Outcome, TimeToEvent, slug
from timeline.engine.censored import extreme
from timeline.engine.censored import of as range_of
from timeline.engine.compiler import Compiler, q_
from timeline.engine.evaluate import ENGINE_MEMORY_LIMIT, Result, Session, staged
from timeline.errors import UsageError
from timeline.language import ast
from timeline.language.durations import Duration, shift
from timeline.language.loader import RuleSet, did_you_mean, known_drugs, param_text, walk
from timeline.store import ASSERTED_SEQ, EVENT_COLUMNS, lower_memory_limit, utc_now

Progress = Callable[[str, float], None]
DAY = timedelta(days=1)
EPS = timedelta(microseconds=1)
_ON = "('medication_start', 'medication_dose_change')"
_OFF = "('discontinuation', 'medication_stop')"


def end_of(day: date) -> datetime:
    """The last microsecond of a date: the instant `timeline state --at DATE` uses."""
    return datetime.combine(day, datetime.min.time()) + DAY - EPS


@dataclass
class Cell:
    """One number of the report: ``n`` of ``N`` (``unknown`` of the N could not be told)."""

    id: str
    section: str
    row: str
    column: str
    group: str
    label: str
    denominator: str  # what N is, in words
    n: int
    N: int
    unknown: int = 0
    numerator_ids: list[str] = field(default_factory=list)
    denominator_ids: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # outcome cells: the group's patients not in N, by why (``stats["left_out"]`` counts them)
    left_out_ids: dict[str, list[str]] = field(default_factory=dict)
    # time-to-event cells: the patients who did not reach the event and for whom the rule was
    # unknown at a moment that could have changed that (they might have reached it unseen).
    # Not ``unknown``: a time-to-event cell has no unknown answers, every patient of N is
    # reached or not (helper 61: a script summing n_unknown counted definite non-resolvers)
    unknown_moment_ids: list[str] = field(default_factory=list)
    # outcome cells: the unknowns by their reason, commonest first (``stats["unknown_reasons"]``
    # counts them), so a table says why without an explain per patient (helper 61)
    unknown_reason_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pct(self) -> float | None:
        """The percentage to one decimal, a half rounded up as tables print it (1/16 is 6.3%, not
        Python's 6.2)."""
        if not self.N:
            return None
        return float(one_decimal(Decimal(100 * self.n) / Decimal(self.N)))

    @property
    def not_reached(self) -> int:
        """Time-to-event cells: the patients of N who did not reach the event."""
        return self.N - self.n

    def text(self) -> str:
        pct = f" ({self.pct:g}%)" if self.pct is not None else ""
        out = f"{self.n}/{self.N}{pct}"
        if self.section == "time_to_event":
            return out + " reached" + tte_not_reached_text(self.not_reached, len(self.unknown_moment_ids))
        return out + (f", {self.unknown} unknown" if self.unknown else "")

    def to_json(self, ids: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cell": self.id, "section": self.section, "row": self.row, "column": self.column,
            "group": self.group, "label": self.label, "n": self.n, "N": self.N, "unknown": self.unknown,
            "pct": self.pct, "text": self.text(), "denominator": self.denominator, "stats": self.stats,
        }  # fmt: skip
        if self.section == "time_to_event":
            out["not_reached"] = self.not_reached
            out["not_reached_with_unknown_moments"] = len(self.unknown_moment_ids)
        if ids:
            out["numerator_ids"] = self.numerator_ids
            out["denominator_ids"] = self.denominator_ids
            out["unknown_ids"] = self.unknown_ids
            if self.section == "outcome":
                out["left_out_ids"] = self.left_out_ids
                out["unknown_reason_ids"] = self.unknown_reason_ids
            if self.section == "time_to_event":
                out["not_reached_with_unknown_moments_ids"] = self.unknown_moment_ids
        return out


def tte_not_reached_text(not_reached: int, unknown_moments: int) -> str:
    """What a time-to-event cell says of the patients who did not reach the event: how many,
    and how many of them had moments the rule was unknown that could have hidden it."""
    if not not_reached or not unknown_moments:
        return ""  # n/N reached says the rest
    return (
        f"; {not_reached} not reached, {unknown_moments} of them with moments the rule was unknown "
        "(might have reached it unseen)"
    )


@dataclass(slots=True)
class TteFacts:
    # time from the index to the event or the censoring, in days, unrounded: a censoring at the
    # end of day X comes before an event at X + 1's midnight (Kaplan–Meier orders by it)
    exact: float
    event: bool
    at: datetime  # the event instant, or the censoring instant
    censored_by: str | None  # window | end_of_follow_up | death | discontinuation
    unknown: bool  # not reached, and unknown at some moment checked
    window_days: float  # the whole window, from the index to the end of its last day
    # ``censored_by`` is a competing event (the item lists it under ``competing``): the time
    # ends there, and Aalen–Johansen counts it as an event of its own, not a censoring
    competing: bool = False

    @property
    def status(self) -> int:
        """For :func:`timeline.cohort.cif.aalen_johansen`: 1 reached, 2 competing, 0 censored."""
        return EVENT if self.event else COMPETING if self.competing else CENSORED

    @property
    def days(self) -> float:
        """``exact`` as shown, to 4 decimals: the end of a day counts as the whole day."""
        return round(self.exact, 4)


@dataclass(slots=True)
class PatientFacts:
    """Everything the report knows about one patient (what `cohort explain` shows)."""

    patient_id: str
    index_event: str | None = None
    index_seq: int | None = None
    t_index: datetime | None = None
    index_date: date | None = None
    q_population: datetime | None = None
    status: str = "no_index"  # included | not_included | no_index
    reasons: list[str] = field(default_factory=list)
    values: dict[tuple[str, str], Result] = field(default_factory=dict)  # (rule, "index"|"population"|slug)
    groups: list[str] = field(default_factory=list)
    subgroup_detail: dict[str, str] = field(default_factory=dict)
    fu_end: date | None = None
    fu_end_reason: str | None = None
    death: date | None = None
    # the study drug followed for this patient: the cohort's, or with `drug: index` the drug of
    # the patient's own index event (None: no study drug, or an index event naming none)
    drug: str | None = None
    disc_date: date | None = None
    disc_reason: str | None = None
    disc_events: list[str] = field(default_factory=list)
    tp_dates: dict[str, date] = field(default_factory=dict)
    # (outcome id, time point slug) → the day of its assessment window whose state the report
    # took, where the time point's date itself was unknown (outcomes with a window only)
    assessed: dict[tuple[str, str], date] = field(default_factory=dict)
    tte: dict[str, TteFacts] = field(default_factory=dict)
    mas: list[dict[str, Any]] = field(default_factory=list)
    adverse_events: list[dict[str, Any]] = field(default_factory=list)
    # the AEs from the index to the end of follow-up the table does not count, each with
    # ``not_counted``: after_discontinuation (until: on_drug), another_drug or no_drug_named (drug: study)
    ae_not_counted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def included(self) -> bool:
        return self.status == "included"


@dataclass
class Report:
    spec: CohortSpec
    manifest: dict[str, Any]
    groups: dict[str, tuple[str, list[str]]]  # id → (label, patient ids)
    cells: list[Cell]
    curves: dict[tuple[str, str], Curve]  # (time-to-event id, group) → KM curve
    patients: dict[str, PatientFacts]
    policies: dict[str, str]  # denominator policy → its definition
    # (time-to-event id, group) → the Aalen–Johansen curve, for items with competing events
    incidence: dict[tuple[str, str], CifCurve] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # worth a look, not wrong (a drug never recorded)
    # what makes the rules differ from the pack's: parameters set to other values than their
    # defaults (params.yaml, --param) and rule files replacing built-in ones, for the table's
    # header (helper 61: a --param run printed only another digest)
    changes: list[str] = field(default_factory=list)

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        ids = [c.id for c in self.cells]
        raise UsageError(
            f"no cell {cell_id!r} in this report{did_you_mean(cell_id, ids)} (list them with --json)"
        )

    def to_json(self, ids: bool = True) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "cohort": {"id": self.spec.id, "title": self.spec.title, "version": self.spec.version},
            "groups": {g: {"label": label, "n": len(p)} for g, (label, p) in self.groups.items()},
            "time_points": [tp.label for tp in self.spec.time_points],
            "denominator_policies": self.policies,
            "warnings": self.warnings,
            "rule_changes": self.changes,
            "cells": [c.to_json(ids) for c in self.cells],
            "kaplan_meier": {
                f"{tid}@{g}" if g != "all" else tid: [
                    {
                        "days": s.time,
                        "at_risk": s.at_risk,
                        "events": s.events,
                        "censored": s.censored,
                        "survival": round(s.survival, 6),
                        # Greenwood's standard error and the pointwise interval of S (None: S
                        # is 1, before any event, or 0; docs/cohorts.md, "Confidence intervals")
                        "std_err": _r(s.std_err, 6),
                        "lower": _r(ci[0], 6)
                        if (ci := s.ci(self.spec.ci_level, self.spec.km_transform))
                        else None,
                        "upper": _r(ci[1], 6) if ci else None,
                    }
                    for s in curve.steps
                ]
                for (tid, g), curve in self.curves.items()
            },
            # items with competing events: every step of the cumulative incidence (F, its
            # delta-method standard error and pointwise limits; docs/cohorts.md, "Competing events")
            "cumulative_incidence": {
                f"{tid}@{g}" if g != "all" else tid: [
                    {
                        "days": s.time,
                        "at_risk": s.at_risk,
                        "events": s.events,
                        "competing": s.competing,
                        "censored": s.censored,
                        "incidence": round(s.incidence, 6),
                        "std_err": _r(s.std_err, 6),
                        "lower": _r(ci[0], 6)
                        if (ci := s.ci(self.spec.ci_level, self.spec.km_transform))
                        else None,
                        "upper": _r(ci[1], 6) if ci else None,
                    }
                    for s in cif.steps
                ]
                for (tid, g), cif in self.incidence.items()
            },
            "methods": methods(self.spec),
        }


def run_cohort(
    session: Session,
    spec: CohortSpec,
    patients: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Report:
    """The report for every patient of the store (or only ``patients``)."""
    import time

    started = time.perf_counter()
    run = _Run(session, spec, progress or (lambda stage, frac: None))
    run.evidence = patients is not None  # a whole cohort counts; explaining one patient shows why
    with _no_cycle_collection():
        session.progress = run.batch
        # DuckDB caches the store's blocks it reads up to its memory limit (by default 80% of
        # RAM): the whole run stays within the engine's limit, as its staged evaluations do
        restore = lower_memory_limit(session.con, ENGINE_MEMORY_LIMIT)
        try:
            run.load(patients)
        finally:
            session.progress = None
            session.con.execute(restore)
        report = run.report()
        if patients is None:  # one patient's record says nothing about the store's drugs
            report.warnings = run.nothing_known() or (
                run.absent_drugs() + run.empty_population() + run.unreachable(report)
            )
        if spec.drug not in run.missing:  # a misspelt study drug: its warning says so, not this one
            report.warnings += index_drug_warnings(spec, session.rules)
        report.warnings += design_warnings(spec, session.rules)
        report.changes = rule_changes(spec, session.rules)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def rule_changes(spec: CohortSpec, rules: RuleSet) -> list[str]:
    """The rules the cohort reads as they differ from the pack's: each parameter set to another
    value than its default (``crp_normal.upper = 10 mg/L (default 6 mg/L)``) and each built-in
    rule a site's file replaces. The manifest has every value given; these are what a reader
    of a pasted table needs to reproduce it."""
    used: list[str] = []
    for rid in spec.rule_ids():
        if rid in rules.rules:
            used += [r for r in rules.dependencies(rid) if r not in used]
    out = []
    for rid in sorted(used):
        r = rules.rules[rid]
        if r.variant_of is not None:
            continue  # a copy at other values: its id says them
        out += [
            f"{rid}.{p.name} = {param_text(p.value, p.unit)} (default {param_text(p.default, p.unit)})"
            for p in r.params
            if p.value is not None and p.value != p.default
        ]
        if r.overrides:
            out.append(f"{rid}: the built-in rule replaced by {r.source}")
    return out


def discontinuation_handling(spec: CohortSpec, rules: RuleSet, tte: TimeToEvent) -> dict[str, str]:
    """How a time-to-event item treats a discontinuation of the study drug before the event, in
    the terms of ICH E9(R1)'s intercurrent-event strategies (helper 61: a clinician expected
    stopping the drug for an adverse event to count as a failure, the table did not say it
    was censored). ``handling``: ``censored`` (hypothetical), ``not_reached`` (composite: the
    rule requires the drug, so it is false once it is stopped), ``followed`` (treatment policy:
    the rule does not read the drug), ``competing`` (while on treatment: the item lists it under
    ``competing``), ``no_study_drug``."""
    if spec.drug is None:
        return {"handling": "no_study_drug", "text": "no study drug: a discontinuation is not followed"}
    drug = "the index drug" if spec.drug_from_index else spec.drug
    if "discontinuation" in tte.competing:
        return {
            "handling": "competing",
            "text": f"a discontinuation of {drug} is a competing event: the patient's time ends at the stop "
            "without the event, and the Aalen–Johansen cumulative incidence estimates the proportion "
            "reaching the event before any stop (ICH E9(R1)'s while-on-treatment strategy); those who "
            "stopped are neither censored nor at risk after it",
        }
    if "discontinuation" in tte.censor:
        return {
            "handling": "censored",
            "text": f"a discontinuation of {drug} censors: the patient leaves the risk set that day and "
            "Kaplan–Meier estimates the proportion had no one stopped (ICH E9(R1)'s hypothetical strategy; "
            "it assumes those who stopped would have fared as those who stayed). The count n/N has them "
            "as not reached",
        }
    drugs = set(_selector_drugs(spec.index)) if spec.drug_from_index else {spec.drug}
    if tte.rule in rules.rules and _requires_drug(rules, rules.rules[tte.rule].define, drugs, set()):
        return {
            "handling": "not_reached",
            "text": f"a discontinuation of {drug} does not censor: {tte.rule} requires the drug, so once it is "
            "stopped the rule is false, a stop before the event counts as not reached (a composite: "
            "stopping is a failure) and the patient stays at risk to the window end; 1 − KM is then the "
            "cumulative incidence with discontinuation as a competing event (Aalen–Johansen's, where no "
            "other censoring comes before the window end)",
        }
    return {
        "handling": "followed",
        "text": f"a discontinuation of {drug} does not censor: {tte.rule} does not require the drug, so the "
        "patient is followed after a stop and an event then counts (ICH E9(R1)'s treatment-policy strategy)",
    }


def _requires_drug(rules: RuleSet, node: ast.Node, drugs: set[str], seen: set[str]) -> bool:
    """Whether a boolean definition is false whenever the patient is off ``drugs``: it is an
    ``on_drug`` of one of them, or an ``all`` one of whose items is (through rule references)."""
    if isinstance(node, ast.OnDrug):
        return bool(drugs & set(node.drugs))
    if isinstance(node, ast.Logic) and node.op == "all":
        return any(_requires_drug(rules, item, drugs, seen) for item in node.items)
    if isinstance(node, ast.RuleRef) and node.rule in rules.rules and node.rule not in seen:
        return _requires_drug(rules, rules.rules[node.rule].define, drugs, seen | {node.rule})
    return False


def design_warnings(spec: CohortSpec, rules: RuleSet) -> list[str]:
    """What a cohort file allows but a reader of its table would not expect (`cohort check` and
    `cohort run` say it): a follow-up that does not end at death; an on-drug rule reading
    another drug than the patients' index drugs (helper 49)."""
    out = []
    if "death" not in spec.end_kinds:
        out.append(
            "follow_up.end does not list death: a patient who died stays followed (in the followed and "
            "on_drug denominators) until their follow-up ends; their values after death are unknown"
        )
    if spec.on_drug_rule and spec.on_drug_rule in rules.rules:
        read: set[str] = set()
        for rid in rules.dependencies(spec.on_drug_rule):
            read.update(
                d for n in walk(rules.rules[rid].define) if isinstance(n, ast.OnDrug) for d in n.drugs
            )
        study = (
            set(_selector_drugs(spec.index))
            if spec.drug_from_index
            else ({spec.drug} if spec.drug else set())
        )
        other = sorted(study - read) if read else []
        if other:
            out.append(
                f"follow_up.on_drug_rule {spec.on_drug_rule} reads {', '.join(sorted(read))}, not "
                f"{', '.join(other)}: a patient on {other[0]} is never on the drug by it (the on_drug "
                "denominator and the MAS relation to the drug follow the rule)"
            )
    out += calendar_month_warnings(spec, rules)
    return out


# time_since's months and years, in days (the engine's: compiler, crossings, replay)
_MEAN_DAYS = {"months": 30.4375, "years": 365.25}


def calendar_month_warnings(spec: CohortSpec, rules: RuleSet) -> list[str]:
    """A warning for each outcome (or time-to-event outcome) whose rule compares a
    ``time_since`` in months or years with a threshold as long as one of its time points (or
    its window): ``time_since`` counts mean months (days / 30.4375), a time point is a
    calendar date, so "≥ 6 months since the first dose" is false at the 6-month time point of
    an index on 7 November (181 days; 6 mean months are 182.6) and true two days later
    (helper 62). Said once per rule, threshold and time point."""
    items: list[tuple[str, str, list[Duration]]] = []
    by_slug = {tp.slug: tp.offset for tp in spec.time_points}
    for o in spec.outcomes:
        items.append((f"outcome {o.id}", o.rule, [by_slug[s] for s in o.time_points if s in by_slug]))
    for t in spec.time_to_event:
        items.append((f"time-to-event outcome {t.id} (window {t.window})", t.rule, [t.window]))
    out: list[str] = []
    said: set[tuple[str, float, str]] = set()
    for what, rule_id, lengths in items:
        if rule_id not in rules.rules:
            continue
        for rid in rules.dependencies(rule_id):
            for since, months in _month_thresholds(rules, rid):
                for d in lengths:
                    if d.unit not in ("month", "year"):
                        continue
                    calendar = d.amount * (12 if d.unit == "year" else 1)
                    if not math.isclose(months, calendar) or (rid, months, str(d)) in said:
                        continue
                    said.add((rid, months, str(d)))
                    lo, hi = _calendar_days(calendar)
                    mean = calendar * _MEAN_DAYS["months"]
                    out.append(
                        f"{what}: {rid} compares time_since in {since} with {_g(months if since == 'months' else months / 12)}, "
                        f"as long as {d}; but time_since counts mean months ({d} = {mean:g} days) and "
                        f"{d} after the index is {lo}–{hi} days on the calendar: at {d} the comparison can "
                        f"fail for a patient who has reached it. For calendar months, compare time_since "
                        f"in days with {lo} (docs/cohorts.md, Time)"
                    )
    return out


def _g(x: float) -> str:
    return f"{x:g}"


def _month_thresholds(rules: RuleSet, rule_id: str) -> Iterator[tuple[str, float]]:
    """(time_since's unit, the threshold in months) of each comparison of a rule between a
    ``time_since`` in months or years and a constant or a parameter."""
    rule = rules.rules[rule_id]
    params = {p.name: p for p in rule.params}
    for n in walk(rule.define):
        if not isinstance(n, ast.Compare):
            continue
        for since, other in ((n.left, n.right), (n.right, n.left)):
            if not isinstance(since, ast.TimeSince) or since.unit not in _MEAN_DAYS:
                continue
            value: object = None
            unit: str | None = None
            if isinstance(other, ast.Const):
                value, unit = other.value, other.unit
            elif isinstance(other, ast.Param) and other.name in params and other.rule == rule_id:
                value, unit = params[other.name].effective, params[other.name].unit
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            # a threshold is in time_since's unit unless it says another (mo, a)
            in_months = unit == "mo" or (unit in (None, "1") and since.unit == "months")
            yield since.unit, float(value) * (1 if in_months else 12)


def _calendar_days(months: float) -> tuple[int, int]:
    """The fewest and the most days ``months`` calendar months span (181 and 184 for 6), over
    every start day of a four-year cycle."""
    start = datetime(2001, 1, 1)
    spans = {
        (shift(day, Duration(int(months), "month")) - day).days
        for day in (start + timedelta(days=i) for i in range(4 * 365 + 1))
    }
    return min(spans), max(spans)


def index_drug_warnings(spec: CohortSpec, rules: RuleSet) -> list[str]:
    """A warning when rules the cohort reads measure from the first dose of a drug (their
    ``index_drug`` parameter, the pack's baselines) other than the cohort's study drug: a
    canakinumab cohort whose ACR Pedi baselines are still at anakinra's first dose."""
    used: set[str] = set()
    for rid in spec.rule_ids():
        if rid in rules.rules:
            used.update(rules.dependencies(rid))
    drugs: dict[str, list[str]] = {}  # index_drug value → the rules at it

    def chosen(rid: str) -> bool:
        """A copy asked for at its index_drug (or given it by such a copy): all_rules cannot move it."""
        given = dict(rules.rules[rid].variant_with).get("index_drug", "") if rid in rules.rules else ""
        source = given.removesuffix(".index_drug")
        return bool(given) and (source == given or chosen(source))

    for rid in sorted(used):
        if chosen(rid):
            continue
        named = rules.rules[rid].variant_of or rid  # a copy by its rule's id: the one a user set
        for p in rules.rules[rid].params:
            if (
                p.name == "index_drug"
                and isinstance(p.effective, str)
                and named not in drugs.get(p.effective, [])
            ):
                drugs.setdefault(p.effective, []).append(named)
    if not drugs:
        return []
    if spec.drug_from_index:
        study = sorted(set(_selector_drugs(spec.index)))
        if set(study) <= set(drugs) and len(drugs) == 1:
            return []
        return [
            f"each patient's study drug is their own index drug ({', '.join(study) or 'any'}), but the rules "
            f"measure every patient from the first dose of {' or '.join(sorted(drugs))} (their index_drug): "
            "a baseline follows one drug for all"
        ]
    off = {d: rids for d, rids in drugs.items() if d != spec.drug}
    if not off or spec.drug is None:
        return []
    return [
        f"the study drug is {spec.drug}, but {', '.join(rids)} measure from the first dose of {d} (their "
        f"index_drug): set all_rules: {{index_drug: {spec.drug}}} in a params.yaml, or --param index_drug={spec.drug} "
        "(a value a params.yaml gives one rule wins over all_rules: change or remove it)"
        for d, rids in sorted(off.items())
    ]


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off for the run, as it was before afterwards. A run keeps
    millions of objects (a value per patient, rule and moment; the cells' patient lists) that
    never form cycles, and the collector's full passes traverse all of them again as they
    grow: at 1M patients 96 s of a 561 s run (same report, same peak memory without it)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Run:
    def __init__(self, session: Session, spec: CohortSpec, progress: Progress) -> None:
        self.missing: list[str] = []  # drugs of the index or the study that no event records (absent_drugs)
        self.open_moment: datetime | None = None  # `otherwise: open`: the moment follow-up is open to
        self.s = session
        self.con = session.con
        self.spec = spec
        self._progress = progress
        self.stage = ("", 0.0)
        self.facts: dict[str, PatientFacts] = {}
        self.pop: list[str] = []
        self.comp0 = Compiler(session.rules, "SELECT 1")
        self.evidence = True
        self.keys: dict[tuple[str, str], tuple[str, str]] = {}

    def progress(self, stage: str, frac: float) -> None:
        self.stage = (stage, frac)
        self._progress(stage, frac)

    def batch(self, i: int, n: int) -> None:
        """Session.progress while the cohort's rules run in batches of patients."""
        if n > 1:
            stage, frac = self.stage
            self._progress(f"{stage}: patients, batch {i + 1} of {n}", frac)

    def _population_events(self) -> str:
        """The current events of the population, in the columns the rule engine reads (a
        compiled query materialises its events relation: all 43 columns of every event of
        100k patients held several GB)."""
        return self.s.store.current_sql(
            self.s.high_water, patients_sql="SELECT patient_id FROM tl_c_pop", columns=self.s.columns
        )

    def key(self, rule_id: str, where: str) -> tuple[str, str]:
        """The key of a patient's value of a rule at a moment of the report, one tuple shared
        by every patient (~16 values per patient: 1M patients would otherwise hold ~16M equal
        tuples, ~1 GB)."""
        k = (rule_id, where)
        return self.keys.setdefault(k, k)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(query, list(params)).fetchall()

    def absent_drugs(self) -> list[str]:
        """A warning for each drug of the index (or the study drug) that no event records: most
        often a misspelling, which would otherwise leave the report empty without a word."""
        spec = self.spec
        index = _selector_drugs(spec.index)
        # `drug: index` names no drug of its own: the index's drugs are the study drugs
        study = [spec.drug] if spec.drug and not spec.drug_from_index else []
        # a sub-group's list names drugs nobody may have had (emapalumab): only one spelt nearly
        # as a recorded drug is worth a word (helper 49: `metotrexate` made every child first-line)
        selectors = [
            (g.id, sel) for g in spec.subgroups for sel in (g.none_before_index, g.any_before_index) if sel
        ]
        known = known_drugs(self.s.rules)  # the built-in pack's: no misspellings
        grouped = {d: gid for gid, sel in selectors for d in _selector_drugs(sel) if d not in known}
        wanted = list(dict.fromkeys([*index, *study, *grouped]))
        if not wanted:
            return []

        def recorded(drug: str) -> bool:  # one early-stopping probe: a recorded drug is found at once
            return bool(self.sql("SELECT 1 FROM tl_c_ev WHERE drug = ? LIMIT 1", [drug]))

        missing = [d for d in wanted if not recorded(d)]
        self.missing = [d for d in missing if d in index or d in study]
        if not missing:
            return []
        present = [d for (d,) in self.sql("SELECT DISTINCT drug FROM tl_c_ev WHERE drug IS NOT NULL")]
        out = []
        for d in missing:
            # a drug the pack names is spelt right: no recorded drug is suggested for it
            # (helper 62: canakinumab got "did you mean 'anakinra'?")
            near = "" if d in known else did_you_mean(d, present)
            if d in index or d in study:
                where = "the index drug" if d in index else "the study drug"
                out.append(
                    f"no event of the store records {where} {d!r}"
                    if d in known
                    else f"{where} {d!r} is not recorded for any patient in the store{near}"
                )
            elif near:
                out.append(
                    f"sub-group {grouped[d]}'s drug {d!r} is not recorded for any patient in the store{near}"
                )
        return out

    # ---- per-patient facts
    def load(self, patients: Sequence[str] | None) -> None:
        spec = self.spec
        self.progress("index events", 0.05)
        # with asserted_seq: events of one instant in the order they were asserted, which a
        # correction does not change; at a tie the one asserted later is the index event, the
        # end of follow-up's or a course's reason, as it wins every tie in the engine (the
        # rules' `first` anchor on the index selector names the same event)
        columns = [*EVENT_COLUMNS, ASSERTED_SEQ]
        self.con.execute(
            "CREATE OR REPLACE TEMP VIEW tl_c_ev AS "
            + self.s.store.current_sql(self.s.high_water, patients, columns=columns)
        )
        for (pid,) in self.sql("SELECT DISTINCT patient_id FROM tl_c_ev ORDER BY 1"):
            self.facts[pid] = PatientFacts(pid)
        for pid in patients or []:
            self.facts.setdefault(pid, PatientFacts(pid))
        pred = self.comp0.predicate(spec.index)
        # index_drug: the drug of the index event, each patient's study drug with `drug: index`
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_c_idx AS
                SELECT patient_id, event_id AS index_event, seq AS index_seq, occurred_at AS t_index,
                       occurred_at::DATE AS index_date,
                       occurred_at::DATE + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND AS q_index,
                       drug AS index_drug
                FROM tl_c_ev WHERE {pred}
                QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY occurred_at, asserted_seq DESC) = 1"""
        )
        rows = self.sql(
            "SELECT patient_id, index_event, index_seq, t_index, index_date, q_index, index_drug FROM tl_c_idx"
        )
        for pid, eid, seq, t, d, q, drug in rows:
            f = self.facts[pid]
            f.index_event, f.index_seq, f.t_index, f.index_date, f.q_population = eid, seq, t, d, q
            f.drug = drug if spec.drug_from_index else spec.drug
            f.status = "not_included"
        self._follow_up()
        self._discontinuation()
        self.progress("population", 0.15)
        self._population()
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE tl_c_pop AS SELECT unnest(?::VARCHAR[]) AS patient_id", [self.pop]
        )
        self._subgroups()
        self.progress("outcomes at time points", 0.3)
        self._time_points()
        for i, tte in enumerate(spec.time_to_event):
            self.progress(f"time to {tte.label}", 0.5 + 0.3 * i / max(len(spec.time_to_event), 1))
            self._time_to_event(tte)
        self.progress("adverse events, MAS episodes", 0.85)
        if spec.adverse_events:
            self._adverse_events()
        if spec.mas is not None:
            self._mas()

    def _follow_up(self) -> None:
        spec = self.spec
        ends = [f"{k}_date" for k in ("end_of_follow_up", "death") if k in spec.end_kinds]
        bound = f"least({', '.join(ends)})" if ends else "NULL::DATE"
        if spec.otherwise == "open":
            # the date in the store's zone (clinical dates are local) of the moment the record
            # is read as of (UTC): not the date where the machine running the report is
            moment = (self.s.as_known_at or utc_now()).replace(tzinfo=UTC)
            asof = moment.astimezone(self.s.store.zone()).date()
            # the manifest records it: a run "as known now" is reproduced by --as-known-at it
            # (helper 49: seq:N of its high-water ended open follow-up at the batch's moment)
            self.open_moment = moment
            fallback, why = f"DATE '{asof.isoformat()}'", f"open: still followed as known at {asof}"
        else:
            fallback, why = "last_date", "last recorded event"
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_c_fu AS WITH f AS (
                    SELECT i.patient_id,
                        min(e.occurred_at::DATE) FILTER (WHERE e.kind = 'end_of_follow_up' AND e.occurred_at >= i.index_date) AS end_of_follow_up_date,
                        arg_min(e.reason, (e.occurred_at, -e.asserted_seq)) FILTER (WHERE e.kind = 'end_of_follow_up' AND e.occurred_at >= i.index_date) AS eofu_reason,
                        min(e.occurred_at::DATE) FILTER (WHERE e.kind = 'death') AS death_date,
                        max(e.occurred_at::DATE) AS last_date
                    FROM tl_c_idx i JOIN tl_c_ev e USING (patient_id) GROUP BY i.patient_id)
                SELECT patient_id, coalesce({bound}, {fallback}) AS fu_end,
                    CASE WHEN {bound} IS NULL THEN {q_(why)}
                         WHEN {bound} = death_date AND {"true" if "death" in spec.end_kinds else "false"} THEN 'death'
                         ELSE 'end of follow-up' || coalesce(' (' || eofu_reason || ')', '') END AS why,
                    death_date AS death
                FROM f"""
        )
        rows = self.sql("SELECT patient_id, fu_end, why, death FROM tl_c_fu")
        for pid, end, why_, death in rows:
            f = self.facts[pid]
            f.fu_end, f.fu_end_reason, f.death = end, why_, death

    def _discontinuation(self) -> None:
        drug = self.spec.drug
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE tl_c_disc (patient_id VARCHAR, t_disc TIMESTAMP, disc_date DATE, reason VARCHAR, events VARCHAR[])"
        )
        if drug is None:
            return
        # The course ends at the first recorded discontinuation on or after the index, or at
        # the stop that begins the final off-drug period, whichever is first: a stop followed
        # by a restart (or a dose change) was an interruption, but a discontinuation ends the
        # course even when the drug is given again later. Its events run up to the next start.
        # With `drug: index` the drug is each patient's own, the drug of their index event:
        # another drug's starts and stops are not theirs.
        if self.spec.drug_from_index:
            ons = f"""SELECT e.patient_id, e.occurred_at FROM tl_c_ev e JOIN tl_c_idx i USING (patient_id)
                      WHERE e.drug = i.index_drug AND e.kind IN {_ON}"""
            is_drug = "s.drug = i.index_drug"
        else:
            ons = f"SELECT patient_id, occurred_at FROM tl_c_ev WHERE drug = {q_(drug)} AND kind IN {_ON}"
            is_drug = f"s.drug = {q_(drug)}"
        self.con.execute(
            f"""INSERT INTO tl_c_disc
                WITH ons AS ({ons}),
                lo AS (SELECT patient_id, max(occurred_at) AS last_on FROM ons GROUP BY patient_id),
                offs AS (SELECT s.* FROM tl_c_ev s JOIN tl_c_idx i USING (patient_id)
                         WHERE {is_drug} AND s.kind IN {_OFF} AND s.occurred_at >= i.t_index),
                firsts AS (
                    SELECT o.patient_id, least(
                        min(o.occurred_at) FILTER (WHERE o.kind = 'discontinuation'),
                        min(o.occurred_at) FILTER (WHERE lo.last_on IS NULL OR o.occurred_at >= lo.last_on)) AS t_disc
                    FROM offs o LEFT JOIN lo USING (patient_id) GROUP BY o.patient_id),
                course AS (
                    SELECT f.patient_id, f.t_disc,
                           (SELECT min(n.occurred_at) FROM ons n WHERE n.patient_id = f.patient_id AND n.occurred_at > f.t_disc) AS t_next
                    FROM firsts f WHERE f.t_disc IS NOT NULL)
                SELECT c.patient_id, c.t_disc, c.t_disc::DATE,
                       arg_min(s.reason, (s.occurred_at, s.kind <> 'discontinuation', -s.asserted_seq)) FILTER (WHERE s.reason IS NOT NULL),
                       list(s.event_id ORDER BY s.occurred_at, s.asserted_seq)
                FROM course c JOIN offs s USING (patient_id)
                WHERE s.occurred_at >= c.t_disc AND (c.t_next IS NULL OR s.occurred_at < c.t_next)
                GROUP BY c.patient_id, c.t_disc"""
        )
        stops = self.sql("SELECT * FROM tl_c_disc")
        named = spellings(self._written("reason", ["discontinuation", "medication_stop"]))
        for pid, _t, d, reason, evs in stops:
            f = self.facts[pid]
            f.disc_date, f.disc_reason, f.disc_events = d, named.get(reason, reason), list(evs)

    def _evaluate(self, rule_ids: Iterable[str], points_sql: str) -> list[Result]:
        ids = list(dict.fromkeys(rule_ids))
        if not ids:
            return []
        return self.s.evaluate(None, ids, points_sql=points_sql, evidence=self.evidence)

    def _population(self) -> None:
        spec = self.spec
        at_index = [*[g.rule for g in spec.subgroups if g.rule], *[b.rule for b in spec.baseline]]
        pop_rules = [*spec.include, *spec.exclude]
        points = "SELECT patient_id, q_index AS q FROM tl_c_idx"
        if spec.evaluate_at == "end_of_follow_up":
            points += (
                """ UNION SELECT patient_id, fu_end + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND FROM tl_c_fu"""
            )
            for f in self.facts.values():
                if f.fu_end is not None:
                    f.q_population = end_of(f.fu_end)
        results = self._evaluate([*pop_rules, *at_index], points)
        for r in results:
            f = self.facts[r.patient_id]
            if f.t_index is None:
                continue
            if end_of(f.t_index.date()) == r.q:
                f.values[self.key(r.rule_id, "index")] = r
            if f.q_population == r.q:
                f.values[self.key(r.rule_id, "population")] = r
        for f in self.facts.values():
            if f.t_index is None:
                f.reasons.append(f"no index event ({spec.index.name}) recorded")
                continue
            for rid in spec.include:
                res = f.values.get((rid, "population"))
                if res is None or res.value is None:
                    f.reasons.append(f"inclusion {rid} unknown" + (f": {res.why}" if res and res.why else ""))
                elif not res.value:
                    f.reasons.append(f"inclusion {rid} false")
            for rid in spec.exclude:
                res = f.values.get((rid, "population"))
                if res is None or res.value is None:
                    f.reasons.append(f"exclusion {rid} unknown" + (f": {res.why}" if res and res.why else ""))
                elif res.value:
                    f.reasons.append(f"exclusion {rid} true")
            if not f.reasons:
                f.status = "included"
                self.pop.append(f.patient_id)

    def empty_population(self) -> list[str]:
        """A warning when no patient is in the population: every figure is 0/0, which a table
        shows without a word (an exclusion that undoes an inclusion, an index nobody has)."""
        if self.pop:
            return []
        indexed = [f for f in self.facts.values() if f.t_index is not None]
        if not indexed:
            return [
                f"the population is empty: no patient of the store has the index event ({self.spec.index.name})"
            ]
        reasons: dict[str, int] = {}
        for f in indexed:
            for why in dict.fromkeys(r.split(":", 1)[0] for r in f.reasons):
                reasons[why] = reasons.get(why, 0) + 1
        common = ", ".join(
            f"{why} for {n}" for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        )
        return [
            f"the population is empty: none of the {len(indexed)} patients with an index event is included ({common})"
        ]

    def nothing_known(self) -> list[str]:
        """A warning when the record read (``--as-known-at``) is from before the store's first
        batch: it held no events then, so every figure is 0/0 — not a drug nobody received or a
        population nobody is in, which the other warnings would say (helper 61: `--as-known-at
        2011-01-31` of a store loaded in 2026, read as a clinical cut-off date)."""
        if self.s.as_known_at is None or self.s.high_water > 0:
            return []
        row = self.sql("SELECT min(recorded_at) FROM batches")
        first = row[0][0] if row else None
        if first is None:
            return []  # an empty store: nothing recorded at any time
        asked = "before anything was written (seq:0)" if self.s.as_known_at.year == 1 else (
            f"as known at {self.s.as_known_at.isoformat(sep=' ')} UTC"
        )  # fmt: skip
        return [
            f"the store held no events {asked}: its first batch was recorded on "
            f"{first.isoformat(sep=' ', timespec='seconds')} UTC, so every figure is 0/0. --as-known-at is "
            "the time the store recorded the events (system time), not a clinical cut-off date: give a "
            "moment after the first batch, or seq:N (a manifest's high_water)"
        ]

    def unreachable(self, report: Report) -> list[str]:
        """A warning for each outcome no patient could be counted in: false or unknown for every
        patient of the population at each of its time points, its commonest reason for unknown
        naming a clause (``no morning_stiffness recorded up to the date``) that no event of the
        store records. Its cells say so in ``stats["unreachable"]`` (helper 61: inactive disease
        was 0/22 with 8 unknown, the only explanation a YAML comment)."""
        out = []
        for o in self.spec.outcomes:
            mine = [c for c in report.cells if c.section == "outcome" and c.row == o.id]
            whole = [c for c in mine if c.group == "all"]
            if not whole or any(c.n for c in whole) or not sum(c.unknown for c in whole):
                continue
            counts: dict[str, int] = {}
            for c in whole:
                for why, ids in c.unknown_reason_ids.items():
                    counts[why] = counts.get(why, 0) + len(ids)
            why, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            name = _clause_name(why)
            if name is None:
                continue
            selectors = [
                node
                for rid in self.s.rules.dependencies(o.rule)
                for node in walk(self.s.rules.rules[rid].define)
                if isinstance(node, ast.Selector) and node.name == name
            ]
            if not selectors or any(
                self.sql(f"SELECT 1 FROM tl_c_ev WHERE {self.comp0.predicate(sel)} LIMIT 1")
                for sel in selectors
            ):
                continue
            flag = {"clause": name, "reason": why,
                    "note": f"no event of the store records {name}: no patient could be counted in the numerator"}  # fmt: skip
            for c in mine:
                c.stats["unreachable"] = flag
            total = sum(counts.values())
            out.append(
                f"outcome {o.id} ({o.label}) is false or unknown for every patient at "
                f"{', '.join(c.column for c in whole)}, and its commonest reason for unknown, "
                f"'{why}' ({n} of {total} unknowns), names {name}, which no event of the store records: "
                "no patient could be counted in its numerator (a rule parameter or a site's own rule may "
                "not require it)"
            )
        return out

    def _subgroups(self) -> None:
        for g in self.spec.subgroups:
            if g.rule is not None:
                for pid in self.pop:
                    f = self.facts[pid]
                    r = f.values.get((g.rule, "index"))
                    if r is not None and r.value:
                        f.groups.append(g.id)
                        f.subgroup_detail[g.id] = f"{g.rule} true at the index"
                    else:
                        state = "unknown" if r is None or r.value is None else "false"
                        f.subgroup_detail[g.id] = f"{g.rule} {state} at the index" + (
                            f": {r.why}" if r is not None and r.why else ""
                        )
                continue
            sel = g.none_before_index or g.any_before_index
            assert sel is not None
            pred = self.comp0.predicate(sel)
            found = {
                pid: evs
                for pid, evs in self.sql(
                    f"""SELECT e.patient_id, list(e.event_id || ' ' || coalesce(e.drug, e.code, e.kind) || ' (' || strftime(e.occurred_at, '%Y-%m-%d') || ')' ORDER BY e.occurred_at, e.asserted_seq)
                        FROM tl_c_ev e JOIN tl_c_idx i USING (patient_id)
                        WHERE ({pred}) AND e.occurred_at < i.t_index
                          AND e.patient_id IN (SELECT patient_id FROM tl_c_pop)
                        GROUP BY e.patient_id"""
                )
            }
            for pid in self.pop:
                f = self.facts[pid]
                evs = found.get(pid)
                member = (evs is None) if g.none_before_index is not None else (evs is not None)
                if member:
                    f.groups.append(g.id)
                what = f"{sel.name} before the index"  # whole: a name cut short hides which drugs
                f.subgroup_detail[g.id] = (
                    f"{what}: {', '.join(evs[:5])}{' …' if len(evs) > 5 else ''}" if evs else f"no {what}"
                )

    def _time_points(self) -> None:
        spec = self.spec
        parts = [
            f"""SELECT patient_id, {q_(tp.slug)} AS tp, (index_date + {tp.offset.sql()})::DATE AS tp_date
                FROM tl_c_idx WHERE patient_id IN (SELECT patient_id FROM tl_c_pop)"""
            for tp in spec.time_points
        ]
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE tl_c_tp AS "
            + (
                f"SELECT *, tp_date + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND AS q FROM ({' UNION ALL '.join(parts)})"
                if parts
                else "SELECT NULL::VARCHAR AS patient_id, NULL::VARCHAR AS tp, NULL::DATE AS tp_date, NULL::TIMESTAMP AS q WHERE false"
            )
        )
        by_q: dict[tuple[str, datetime], list[str]] = {}
        for pid, tp, d, q in self.sql("SELECT patient_id, tp, tp_date, q FROM tl_c_tp"):
            self.facts[pid].tp_dates[tp] = d
            by_q.setdefault((pid, q), []).append(tp)
        rules = [o.rule for o in spec.outcomes] + ([spec.on_drug_rule] if spec.on_drug_rule else [])
        for r in self._evaluate(rules, "SELECT patient_id, q FROM tl_c_tp"):
            for tp in by_q.get((r.patient_id, r.q), []):
                self.facts[r.patient_id].values[self.key(r.rule_id, tp)] = r
        for f in self.facts.values():
            _unknown_past_follow_up(f)
        windowed = [o for o in spec.outcomes if o.window is not None]
        if windowed:
            self._assess(windowed)

    def _assess(self, outcomes: list[Outcome]) -> None:
        """Outcomes with an assessment window: where the rule is unknown at the end of the
        time point's date, its state on the nearest day of the window with a recorded event on
        which it is known (the earlier of two as near; docs/cohorts.md, "Time"). Those days
        count only within follow-up and, for an ``on_drug`` denominator, while the patient is
        on the drug. Only the windows of unknown dates are searched: their days are evaluated
        values only (:meth:`Session.states`) and the choice made in DuckDB; a value is
        evaluated again, with its evidence, only when one patient is explained."""
        spec = self.spec
        by_id = {o.id: o for o in outcomes}
        # every windowed value starts as the time point's own; a known day of the window
        # replaces it only where the date itself is unknown
        open_: tuple[list[str], list[str], list[str]] = ([], [], [])
        for f in self.facts.values():
            for o in outcomes:
                for tp in o.time_points:
                    r = f.values.get((o.rule, tp))
                    if r is not None:
                        f.values[self.key(o.rule, o.where(tp))] = r
                    if tp in f.tp_dates and (r is None or r.value is None):
                        for column, value in zip(open_, (o.id, f.patient_id, tp), strict=True):
                            column.append(value)
        if not open_[0]:
            return
        self.con.execute(
            """CREATE OR REPLACE TEMP TABLE tl_c_open AS SELECT unnest(?::VARCHAR[]) AS oid,
                   unnest(?::VARCHAR[]) AS patient_id, unnest(?::VARCHAR[]) AS tp""",
            list(open_),
        )
        # the days with a recorded event around each time point still open, in the widest of
        # the windows: one pass over the events, whatever the number of windowed outcomes
        windows = list(dict.fromkeys(o.window for o in outcomes if o.window is not None))
        los = [f"(t.tp_date - {w.before.sql()})::DATE" for w in windows]
        his = [f"(t.tp_date + {w.after.sql()})::DATE" for w in windows]
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_c_days AS
                SELECT DISTINCT t.patient_id, t.tp, e.occurred_at::DATE AS day
                FROM tl_c_tp t SEMI JOIN tl_c_open o ON o.patient_id = t.patient_id AND o.tp = t.tp
                JOIN tl_c_ev e ON e.patient_id = t.patient_id
                WHERE e.kind <> 'birth'
                  AND e.occurred_at::DATE BETWEEN least({", ".join(los)}) AND greatest({", ".join(his)})"""
        )
        parts = []
        for o in outcomes:
            assert o.window is not None
            lo = f"(t.tp_date - {o.window.before.sql()})::DATE"
            hi = f"(t.tp_date + {o.window.after.sql()})::DATE"
            on_drug = ""
            if o.denominator == "on_drug" and not spec.on_drug_rule:
                on_drug = "AND (x.disc_date IS NULL OR d.day < x.disc_date)"
            parts.append(
                f"""SELECT {q_(o.id)} AS oid, {q_(o.rule)} AS rule_id, t.patient_id, t.tp, t.tp_date, d.day
                    FROM tl_c_open c JOIN tl_c_tp t ON t.patient_id = c.patient_id AND t.tp = c.tp
                    JOIN tl_c_days d ON d.patient_id = t.patient_id AND d.tp = t.tp
                      AND d.day BETWEEN {lo} AND {hi} AND d.day <> t.tp_date
                    JOIN tl_c_idx i ON i.patient_id = t.patient_id AND d.day > i.index_date
                    JOIN tl_c_fu f ON f.patient_id = t.patient_id AND d.day <= f.fu_end
                    LEFT JOIN tl_c_disc x ON x.patient_id = t.patient_id
                    WHERE c.oid = {q_(o.id)} {on_drug}"""
            )
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_c_cand AS
                SELECT *, day + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND AS q,
                       abs(datediff('day', tp_date, day)) AS dist
                FROM ({" UNION ALL ".join(parts)})"""
        )
        rules = {o.rule for o in outcomes}
        gate = spec.on_drug_rule if any(o.denominator == "on_drug" for o in outcomes) else None
        self.s.states(
            "SELECT DISTINCT patient_id, q FROM tl_c_cand",
            sorted(rules | ({gate} if gate else set())),
            name="tl_c_wst",
        )
        gated = [q_(o.id) for o in outcomes if gate and o.denominator == "on_drug"]
        gate_join = (
            f"""LEFT JOIN tl_c_wst g ON g.rule_id = {q_(gate)} AND g.patient_id = c.patient_id AND g.q = c.q"""
            if gate
            else ""
        )
        gate_ok = f"AND (c.oid NOT IN ({', '.join(gated)}) OR g.b IS TRUE)" if gated else ""
        order = "(c.dist, c.day)"
        chosen = self.sql(
            f"""SELECT c.oid, c.patient_id, c.tp, arg_min(c.q, {order}), arg_min(c.day, {order}),
                       arg_min(s.b, {order}), arg_min(s.why, {order})
                FROM tl_c_cand c
                JOIN tl_c_wst s ON s.rule_id = c.rule_id AND s.patient_id = c.patient_id AND s.q = c.q
                {gate_join}
                WHERE s.b IS NOT NULL {gate_ok}
                GROUP BY ALL"""
        )
        for name in ("tl_c_open", "tl_c_days", "tl_c_cand", "tl_c_wst"):
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
        if not self.evidence:
            # a whole cohort counts values: the state read at the day taken is the result
            for oid, pid, tp, q, day, b, why in chosen:
                o = by_id[oid]
                f = self.facts[pid]
                f.values[self.key(o.rule, o.where(tp))] = Result(
                    o.rule, pid, q.isoformat(sep=" "), q, "bool", b, None, why, []
                )
                f.assessed[(oid, tp)] = day
            return
        wanted: dict[str, list[tuple[str, str, str, datetime, date]]] = {}
        for oid, pid, tp, q, day, _b, _why in chosen:
            wanted.setdefault(by_id[oid].rule, []).append((oid, pid, tp, q, day))
        for rule, rows in wanted.items():
            at: dict[tuple[str, datetime], list[tuple[str, str, date]]] = {}
            for oid, pid, tp, q, day in rows:
                at.setdefault((pid, q), []).append((oid, tp, day))
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE tl_c_apts AS SELECT unnest(?::VARCHAR[]) AS patient_id, unnest(?::TIMESTAMP[]) AS q",
                [[p for p, _ in at], [q for _, q in at]],
            )
            for r in self._evaluate([rule], "SELECT patient_id, q FROM tl_c_apts"):
                for oid, tp, day in at.get((r.patient_id, r.q), []):
                    f = self.facts[r.patient_id]
                    f.values[self.key(rule, by_id[oid].where(tp))] = r
                    f.assessed[(oid, tp)] = day
            self.con.execute("DROP TABLE IF EXISTS tl_c_apts")

    def _time_to_event(self, tte: TimeToEvent) -> None:
        # what ends a patient's time before the window's end: a censoring, or a competing event
        # (the first matching name is given as the reason when dates tie: a death on the day
        # follow-up ends is a death)
        causes = {*tte.censor, *tte.competing}
        censor = []
        if "death" in causes:
            censor.append(("death", "death"))
        if "discontinuation" in causes:
            censor.append(("disc_date", "discontinuation"))
        if "end_of_follow_up" in tte.censor:
            censor.append(("fu_end", "end_of_follow_up"))
        window_end = f"(i.index_date + {tte.window.sql()})::DATE"
        ends = ", ".join([window_end, *(c for c, _ in censor)])
        reason = " ".join(f"WHEN end_date = {c} THEN '{name}'" for c, name in censor)
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_c_tb AS
                SELECT *, greatest(end_date + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND, t0) AS t_end,
                       CASE WHEN end_date = w_date THEN 'window' {reason} END AS why FROM (
                    SELECT i.patient_id, i.t_index AS t0, {window_end} AS w_date,
                           {window_end} + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND - i.t_index AS w_span,
                           f.fu_end, f.death, d.disc_date, least({ends}) AS end_date
                    FROM tl_c_idx i JOIN tl_c_fu f USING (patient_id) LEFT JOIN tl_c_disc d USING (patient_id)
                    WHERE i.patient_id IN (SELECT patient_id FROM tl_c_pop))"""
        )
        # Values only (a time to event reads whether the rule holds, never its evidence), in
        # batches of patients, each one statement per relation under the engine's memory
        # limit, as a cohort run's states are: one WITH query of complete response at every
        # change point of 100k patients took 28 s and 5.3 GB.
        comp = Compiler(self.s.rules, "SELECT * FROM tl_bev", evidence=False)
        cp = comp.change_points(self.s.rules.rules[tte.rule].define)
        comp.add(
            "tte_pts",
            f"""SELECT DISTINCT c.patient_id, c.c AS q FROM {cp} c JOIN tl_c_tb b
                    ON b.patient_id = c.patient_id AND c.c > b.t0 AND c.c <= b.t_end
                UNION SELECT patient_id, q FROM tl_pts""",
        )
        root = comp.rule(tte.rule, "tte_pts")
        # the event: the first true instant; sustained, the first true instant after the last
        # false one up to the window's end (an unknown moment between visits does not end a
        # spell: helper 49, every Valencia resolution was dated at the last visit before 3
        # months, a median of 88 days against the ground truth's 16)
        after = "(last_false IS NULL OR q > last_false)" if tte.sustained else "true"
        # unknown moments that could have hidden the event: before it (or any, not reached);
        # sustained, only after the last false one — a spell before it ended there, so a
        # patient false at the window's end did not reach it whatever came before (helper 61:
        # four children false at 3 months were "not reached but unknown at times")
        final = f"""SELECT b.patient_id, b.t0, b.t_end, b.why, h.hit, coalesce(h.unk, 0), b.w_span
            FROM tl_c_tb b LEFT JOIN (
                SELECT patient_id, hit, count_if(b IS NULL AND (hit IS NULL OR q < hit) AND {after}) AS unk FROM (
                    SELECT patient_id, q, b, last_false, min(q) FILTER (WHERE b AND {after}) OVER (PARTITION BY patient_id) AS hit
                    FROM (SELECT patient_id, q, b,
                                 max(q) FILTER (WHERE b = false) OVER (PARTITION BY patient_id) AS last_false
                          FROM {root}))
                GROUP BY patient_id, hit) h USING (patient_id)
            WHERE b.patient_id IN (SELECT patient_id FROM tl_pts)"""
        rows = []
        for _ in self.s.batches("SELECT patient_id, t0 AS q FROM tl_c_tb"):
            rows += staged(self.con, comp, {tte.rule: root}, final)
        for pid, t0, t_end, why, hit, unk, span in rows:
            at = hit if hit is not None else t_end
            self.facts[pid].tte[tte.id] = TteFacts(
                exact=(at - t0).total_seconds() / 86400, event=hit is not None, at=at,
                censored_by=None if hit else why, unknown=hit is None and unk > 0, window_days=_days(span),
                competing=hit is None and why in tte.competing,
            )  # fmt: skip

    def _written(self, text: str, kinds: list[str]) -> dict[str, int]:
        """How often each spelling of ``text`` is written in the store's events of ``kinds`` (as
        known at the run's moment): the spelling a row is shown under is chosen over the whole
        store, so that one patient's `cohort explain` labels it as the whole report does."""
        current = self.s.store.current_sql(self.s.high_water, kinds=kinds)
        found = self.sql(f"SELECT {text}, count(*) FROM ({current}) WHERE {text} IS NOT NULL GROUP BY 1")
        return {str(t): int(n) for t, n in found}

    def _adverse_events(self) -> None:
        rows = self.sql(
            """SELECT e.patient_id, lower(e.term), e.grade, e.event_id, e.occurred_at, e.serious, e.action, e.drug,
                      coalesce(e.occurred_at::DATE > x.disc_date, false) AS after_disc
               FROM tl_c_ev e JOIN tl_c_idx i USING (patient_id) JOIN tl_c_fu f USING (patient_id)
               LEFT JOIN tl_c_disc x USING (patient_id)
               WHERE e.kind = 'adverse_event' AND e.occurred_at >= i.t_index AND e.occurred_at::DATE <= f.fu_end
                 AND e.patient_id IN (SELECT patient_id FROM tl_c_pop)
               ORDER BY e.patient_id, e.occurred_at, e.asserted_seq"""
        )
        named = spellings(self._written("lower(term)", ["adverse_event"]))
        for pid, term, grade, eid, t, serious, action, drug, after_disc in rows:
            f = self.facts[pid]
            shown = named.get(term, term)
            ae = {"term": shown, "grade": grade, "event_id": eid, "occurred_at": t, "serious": serious,
                  "action": action, "drug": drug}  # fmt: skip
            if shown != term:
                ae["term_as_recorded"] = term
            # not the study drug's first: an AE of another drug after the discontinuation is
            # another drug's, "after the discontinuation" being of the study drug's AEs
            why = (
                ("another_drug" if drug is not None else "no_drug_named")
                if self.spec.ae_drug == "study" and drug != f.drug
                else "after_discontinuation" if self.spec.ae_until == "on_drug" and after_disc
                else None
            )  # fmt: skip
            if why is not None:  # outside the span (after the discontinuation), or not the study drug's
                f.ae_not_counted.append({**ae, "not_counted": why})
                continue
            f.adverse_events.append(ae)

    def _mas(self) -> None:
        mas = self.spec.mas
        assert mas is not None
        comp = Compiler(self.s.rules, self._population_events())
        when = self.s.rules.rules[mas.rule].define if mas.rule else None
        eps = comp.episodes(
            ast.Episodes(select=mas.select, when=when, merge_gap=ast.DurationRef(value=mas.merge_gap))
        )
        rows = self.sql(
            f"{comp.out.with_sql()}\nSELECT patient_id, s, e, ev FROM {eps} ORDER BY patient_id, s"
        )
        rule = mas.on_drug_rule or self.spec.on_drug_rule
        on: dict[tuple[str, datetime], bool | None] = {}
        if rule is not None and rows:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE tl_c_mas AS SELECT unnest(?::VARCHAR[]) AS patient_id, unnest(?::TIMESTAMP[]) AS q",
                [[r[0] for r in rows], [r[1] for r in rows]],
            )
            for r in self._evaluate([rule], "SELECT DISTINCT patient_id, q FROM tl_c_mas"):
                on[(r.patient_id, r.q)] = r.value  # type: ignore[assignment]
        far = datetime(9999, 1, 1)
        for pid, s, e, ev in rows:
            f = self.facts[pid]
            assert f.t_index is not None and f.fu_end is not None
            if s.date() > f.fu_end:
                continue  # after follow-up: outside the study
            if s < f.t_index:
                where = "before_index"
            elif rule is not None:
                v = on.get((pid, s))
                where = "on_drug" if v else "unknown_drug_status" if v is None else "off_drug"
            else:
                stopped = f.disc_date is not None and s.date() >= f.disc_date
                where = "off_drug" if stopped else "on_drug"
            f.mas.append(
                {"start": s, "end": None if e >= far else e, "relation": where, "evidence": list(ev or [])}
            )

    # ---- cells
    def report(self) -> Report:
        spec = self.spec
        self.progress("tables", 0.95)
        groups: dict[str, tuple[str, list[str]]] = {"all": ("all patients", list(self.pop))}
        for g in spec.subgroups:
            groups[g.id] = (g.label, [p for p in self.pop if g.id in self.facts[p].groups])
        cells: list[Cell] = []
        cells += self._flow()
        curves: dict[tuple[str, str], Curve] = {}
        incidence: dict[tuple[str, str], CifCurve] = {}
        # every group gets the rows the whole population has, zeros included
        everyone = [self.facts[p] for p in self.pop]
        ae_rows = {key for f in everyone for ae in f.adverse_events for key in ae_keys(ae)}
        # the "any" row always: a table of no adverse events says 0/N (helper 49: it vanished),
        # and says how many the span and the attribution left out
        ae_rows.add(("any", "any grade"))
        reasons = {f.disc_reason or "no reason recorded" for f in everyone if f.disc_date is not None}
        for gid, (_label, ids) in groups.items():
            suffix = "" if gid == "all" else f"@{gid}"
            members = [self.facts[p] for p in ids]
            cells += self._baseline(gid, suffix, members)
            cells += self._outcomes(gid, suffix, members)
            for tte in spec.time_to_event:
                cell, curve, cif = self._tte_cell(tte, gid, suffix, members)
                cells.append(cell)
                curves[(tte.id, gid)] = curve
                if cif is not None:
                    incidence[(tte.id, gid)] = cif
            if spec.adverse_events:
                cells += self._ae_cells(gid, suffix, members, ae_rows)
            if spec.discontinuations and spec.drug:
                cells += self._disc_cells(gid, suffix, members, reasons)
            if spec.mas is not None:
                cells += self._mas_cells(gid, suffix, members)
        manifest = {**self.s.manifest(), "cohort": spec.manifest()}
        if self.open_moment is not None:
            # UTC, written with Z as every system time in JSON (was +00:00)
            manifest["cohort"]["open_follow_up_as_known_at"] = (
                self.open_moment.isoformat().removesuffix("+00:00") + "Z"
            )
        return Report(
            spec=spec, manifest=manifest, groups=groups, cells=cells, curves=curves,
            patients=self.facts, policies=policies(spec), incidence=incidence,
        )  # fmt: skip

    def _flow(self) -> list[Cell]:
        spec = self.spec
        everyone = sorted(self.facts)
        indexed = [p for p in everyone if self.facts[p].t_index is not None]
        out = [
            _cell("population.index", "population", "index", "", "all",
                  f"index event: first {spec.index.name}", "patients in the store", indexed, everyone),
            _cell("population.included", "population", "included", "", "all", "in the population",
                  "patients with an index event", self.pop, indexed),
        ]  # fmt: skip
        for kind, rids in (("include", spec.include), ("exclude", spec.exclude)):
            for rid in rids:
                vals = {p: self.facts[p].values.get((rid, "population")) for p in indexed}
                yes = [p for p in indexed if (r := vals[p]) is not None and r.value is True]
                unk = [p for p in indexed if (r := vals[p]) is None or r.value is None]
                out.append(
                    _cell(f"population.{kind}.{rid}", "population", f"{kind}: {rid}", "", "all",
                          f"{'inclusion' if kind == 'include' else 'exclusion'} {rid} true at the "
                          f"{'index' if spec.evaluate_at == 'index' else 'end of follow-up'}",
                          "patients with an index event", yes, indexed, unk)
                )  # fmt: skip
        for g in spec.subgroups:
            members = [p for p in self.pop if g.id in self.facts[p].groups]
            unk = []
            if g.rule:
                unk = [
                    p
                    for p in self.pop
                    if (r := self.facts[p].values.get((g.rule, "index"))) is None or r.value is None
                ]
            out.append(
                _cell(f"subgroup.{g.id}", "subgroup", g.id, "", "all", g.label, "the population", members, self.pop, unk)
            )  # fmt: skip
        return out

    def _baseline(self, gid: str, suffix: str, members: list[PatientFacts]) -> list[Cell]:
        out: list[Cell] = []
        ids = [f.patient_id for f in members]
        for b in self.spec.baseline:
            rule = self.s.rules.rules[b.rule]
            vals = {f.patient_id: f.values.get((b.rule, "index")) for f in members}
            unk = [p for p, r in vals.items() if r is None or r.value is None]
            if rule.type.kind == "bool":
                yes = [p for p, r in vals.items() if r is not None and r.value is True]
                out.append(_cell(f"baseline.{b.id}{suffix}", "baseline", b.id, "", gid, b.label,
                                 "the group, at the index", yes, ids, unk))  # fmt: skip
                continue
            # a censored value (<5) is known as a range: its bound and qualifier
            known = {
                p: (float(r.value), r.qualifier)
                for p, r in vals.items()
                if r is not None and r.value is not None
            }
            unit = rule.value_type.unit
            c = _cell(f"baseline.{b.id}{suffix}", "baseline", b.id, "", gid, b.label,
                      "the group, at the index (n: value known)", list(known), ids, unk)  # fmt: skip
            c.stats = {**_censored_summary(list(known.values())), "unit": unit}
            out.append(c)
        months = {
            f.patient_id: (f.fu_end - f.index_date).days / 30.4375  # rounded once, in _summary
            for f in members
            if f.fu_end is not None and f.index_date is not None
        }
        c = _cell(f"baseline.follow_up{suffix}", "baseline", "follow_up", "", gid,
                  "follow-up from the index (months)", "the group", list(months), ids)  # fmt: skip
        c.stats = {**_summary(list(months.values())), "unit": "mo"}
        out.append(c)
        return out

    def _left_out(self, f: PatientFacts, policy: str, tp: str) -> str | None:
        """Why the patient is not in the denominator of ``policy`` at ``tp`` (None: in it)."""
        d = f.tp_dates.get(tp)
        if d is None:
            return "no time point date"
        if policy == "all":
            return None
        if f.fu_end is None or f.fu_end < d:
            return "follow-up ended"
        if policy == "followed":
            return None
        if self.spec.on_drug_rule:
            r = f.values.get((self.spec.on_drug_rule, tp))
            if r is not None and r.value is True:
                return None
            return f"{self.spec.on_drug_rule} {'unknown' if r is None or r.value is None else 'false'}"
        if f.disc_date is not None and f.disc_date <= d:
            return f"{_drug_label(self.spec)} discontinued"  # with `drug: index`: whichever it was
        return None

    def _outcomes(self, gid: str, suffix: str, members: list[PatientFacts]) -> list[Cell]:
        out: list[Cell] = []
        for o in self.spec.outcomes:
            for tp in self.spec.time_points:
                if tp.slug not in o.time_points:
                    continue
                left_out: dict[str, list[str]] = {}
                den = []
                for f in members:
                    why = self._left_out(f, o.denominator, tp.slug)
                    if why is None:
                        den.append(f)
                    else:
                        left_out.setdefault(why, []).append(f.patient_id)
                where = o.where(tp.slug)
                vals = {f.patient_id: f.values.get((o.rule, where)) for f in den}
                yes = [p for p, r in vals.items() if r is not None and r.value is True]
                unk = [p for p, r in vals.items() if r is None or r.value is None]
                c = _cell(f"outcome.{o.id}.{tp.slug}{suffix}", "outcome", o.id, tp.label, gid, o.label,
                          f"{o.denominator} at {tp.label}: {POLICY_TEXT[o.denominator]}",
                          yes, [f.patient_id for f in den], unk)  # fmt: skip
                c.left_out_ids = {why: sorted(ids) for why, ids in sorted(left_out.items())}
                c.stats = {"left_out": {why: len(ids) for why, ids in c.left_out_ids.items()}}
                by_reason: dict[str, list[str]] = {}
                for p in c.unknown_ids:
                    r = vals[p]
                    by_reason.setdefault(reason_key(r.why if r is not None else None), []).append(p)
                c.unknown_reason_ids = dict(sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])))
                c.stats["unknown_reasons"] = [
                    {"reason": why, "n": len(ids)} for why, ids in c.unknown_reason_ids.items()
                ]
                if o.window is not None:
                    c.denominator += f"; assessment window {o.window}"
                    c.stats["assessment_window"] = o.window.to_json()
                    c.stats["assessed_off_target"] = sum((o.id, tp.slug) in f.assessed for f in den)
                out.append(c)
        return out

    def _tte_cell(
        self, tte: TimeToEvent, gid: str, suffix: str, members: list[PatientFacts]
    ) -> tuple[Cell, Curve, CifCurve | None]:
        facts = [(f.patient_id, f.tte[tte.id]) for f in members if tte.id in f.tte]
        curve = kaplan_meier([t.exact for _, t in facts], [t.event for _, t in facts])
        hit = [p for p, t in facts if t.event]
        unk = [p for p, t in facts if t.unknown]
        censored: dict[str, int] = {}
        competing: dict[str, int] = {}
        for _, t in facts:
            if not t.event and t.censored_by:
                into = competing if t.competing else censored
                into[t.censored_by] = into.get(t.censored_by, 0) + 1
        c = _cell(f"tte.{tte.id}{suffix}", "time_to_event", tte.id, f"within {tte.window}", gid, tte.label,
                  f"the group; censored at {', '.join(tte.censor) or 'the window end only'}",
                  hit, [p for p, _ in facts])  # fmt: skip
        c.unknown_moment_ids = sorted(unk)
        median = curve.median()
        # by the window end: each patient's time as a share of their own window (3 calendar
        # months are 89-92 days), so it estimates "within the window" as the count reads it
        # (helper 49: read at the longest window, 85.9% where 81.8% were seen, no one lost)
        own = kaplan_meier(
            [t.exact / t.window_days if t.window_days else 0.0 for _, t in facts], [t.event for _, t in facts]
        )
        by_end = own.reached_by(1.0) if facts else None
        level, transform = self.spec.ci_level, self.spec.km_transform
        # the interval of 1 − S is 1 minus that of S, ends swapped
        s_ci = own.survival_ci_at(1.0, level, transform) if facts else None
        by_end_ci = (1.0 - s_ci[1], 1.0 - s_ci[0]) if s_ci is not None else None
        c.stats = {
            "window": str(tte.window),
            "km_median_days": median,
            "km_reached_by_window_end": round(by_end, 4) if by_end is not None else None,
            # the percentage printed, from the unrounded estimate (not rounded twice)
            "km_pct_by_window_end": _pct(by_end),
            "observed_median_days": statistics.median([t.days for _, t in facts if t.event]) if hit else None,
            "censored": censored,
            "ci_level": level,
            "km_ci": KM_CI_TEXT[transform],
            # None: no interval (no one reached it yet, S = 1; or everyone at risk did, S = 0)
            "km_reached_by_window_end_ci": [round(x, 4) for x in by_end_ci] if by_end_ci else None,
            "km_pct_by_window_end_ci": [_pct(x) for x in by_end_ci] if by_end_ci else None,
            # Brookmeyer–Crowley; a limit None ("NA") where the data do not bound the median
            "km_median_days_ci": list(curve.median_ci(level, transform)) if facts else [None, None],
            "discontinuation": discontinuation_handling(self.spec, self.s.rules, tte),
            # not reached, and the study drug discontinued within the window (censored there, or
            # not: the footnote on the handling says how many it concerns)
            "discontinued_not_reached": sum(
                1 for p, t in facts if not t.event and _stopped_within(self.facts[p], t)
            ),
        }
        if not tte.competing:
            return c, curve, None
        # competing events: the cumulative incidence (Aalen–Johansen), over time and by the
        # window's end as a share of each patient's own window, as Kaplan–Meier's above; the KM
        # fields stay, treating the competing events as censorings (the cause-specific estimate
        # had they not happened, which overstates the incidence)
        cif = aalen_johansen([t.exact for _, t in facts], [t.status for _, t in facts])
        own_cif = aalen_johansen(
            [t.exact / t.window_days if t.window_days else 0.0 for _, t in facts],
            [t.status for _, t in facts],
        )
        f_end = own_cif.incidence_at(1.0) if facts else None
        f_ci = own_cif.incidence_ci_at(1.0, level, transform) if facts else None
        c.stats.update({
            "estimator": "aalen-johansen",
            "competing": competing,
            "cif_reached_by_window_end": round(f_end, 4) if f_end is not None else None,
            "cif_pct_by_window_end": _pct(f_end),
            "cif_reached_by_window_end_ci": [round(x, 4) for x in f_ci] if f_ci else None,
            "cif_pct_by_window_end_ci": [_pct(x) for x in f_ci] if f_ci else None,
            "cif_median_days": cif.median(),
            "cif_ci": CIF_CI_TEXT[transform],
        })  # fmt: skip
        return c, curve, cif

    def _ae_cells(
        self, gid: str, suffix: str, members: list[PatientFacts], rows: set[tuple[str, str]]
    ) -> list[Cell]:
        ids = [f.patient_id for f in members]
        basis = "on_drug" if self.spec.ae_until == "on_drug" else "follow_up"
        years = exposure_years(members, basis)
        by: dict[tuple[str, str], dict[str, int]] = {key: {} for key in rows}
        for f in members:
            for ae in f.adverse_events:
                for key in ae_keys(ae):
                    by[key][f.patient_id] = by[key].get(f.patient_id, 0) + 1
        out = []
        for (term, grade), pts in sorted(
            by.items(), key=lambda kv: (kv[0][0] != "any", kv[0][0], kv[0][1] != "any grade", kv[0][1])
        ):
            label = "any adverse event" if term == "any" else f"{term}, {grade}"
            c = _cell(f"ae.{slug(term)}.{slug(grade)}{suffix}", "adverse_event", term, grade, gid, label,
                      ae_scope(self.spec), sorted(pts), ids)  # fmt: skip
            events = sum(pts.values())
            c.stats = {"events": events, **self._rate(events, years, basis)}
            if ae_left_out(self.spec) and (term, grade) == ("any", "any grade"):
                # what the span and the attribution left out of the group's count, so that it can be checked
                c.stats["not_counted"] = {
                    why: sum(ae["not_counted"] == why for f in members for ae in f.ae_not_counted)
                    for why in ae_left_out(self.spec)
                }
            out.append(c)
        return out + self._ae_by_cells(gid, suffix, members, years, basis)

    def _ae_by_cells(
        self, gid: str, suffix: str, members: list[PatientFacts], years: float, basis: str
    ) -> list[Cell]:
        """The counted adverse events by the action taken with the drug the AE names and by
        seriousness, as a safety table gives them (patients with ≥ 1 such AE, n/N; events
        counted): "adverse events that stopped the drug" read from the AEs themselves, not
        from the free text of discontinuation reasons (helper 61). Every action and both
        seriousness rows always; a row for AEs recording neither only where one does."""
        ids = [f.patient_id for f in members]
        everyone = [self.facts[p] for p in self.pop]
        out = []
        for row, values in (("action", AE_ACTION_ROWS), ("serious", AE_SERIOUS_ROWS)):
            present = {ae_by_value(ae, row) for f in everyone for ae in f.adverse_events}
            for value, label in values.items():
                if value == "not_recorded" and value not in present:
                    continue
                pts: dict[str, int] = {}
                drugs: dict[str, int] = {}
                for f in members:
                    for ae in f.adverse_events:
                        if ae_by_value(ae, row) == value:
                            pts[f.patient_id] = pts.get(f.patient_id, 0) + 1
                            named = str(ae.get("drug") or "no drug named")
                            drugs[named] = drugs.get(named, 0) + 1
                c = _cell(f"ae_{row}.{value}{suffix}", "adverse_event_by", row, value, gid, label,
                          ae_scope(self.spec), sorted(pts), ids)  # fmt: skip
                events = sum(pts.values())
                # the action is taken with the drug the AE names: which ones, so that "drug
                # withdrawn" can be read as a stop of the study drug or not
                c.stats = {
                    "events": events,
                    "by_drug": dict(sorted(drugs.items())),
                    **self._rate(events, years, basis),
                }
                out.append(c)
        return out

    def _disc_cells(
        self, gid: str, suffix: str, members: list[PatientFacts], all_reasons: set[str]
    ) -> list[Cell]:
        ids = [f.patient_id for f in members]
        stopped = [f for f in members if f.disc_date is not None]
        years = exposure_years(members, "to_discontinuation")
        out = [
            _cell(f"discontinuation.any{suffix}", "discontinuation", "any", "", gid,
                  f"{_drug_label(self.spec)} discontinued", "the group", [f.patient_id for f in stopped], ids)
        ]  # fmt: skip
        if self.spec.drug_from_index:
            # the row counts stops of different drugs: say how many of each (a stop is of the
            # patient's index drug, so it names one)
            by_drug: dict[str, int] = {}
            for f in stopped:
                by_drug[str(f.drug)] = by_drug.get(str(f.drug), 0) + 1
            out[0].stats = {"by_drug": dict(sorted(by_drug.items()))}
        out[0].stats.update(self._rate(out[0].n, years, "to_discontinuation"))
        reasons: dict[str, list[str]] = {r: [] for r in all_reasons}
        for f in stopped:
            reasons.setdefault(f.disc_reason or "no reason recorded", []).append(f.patient_id)
        for reason, pts in sorted(reasons.items()):
            out.append(
                _cell(f"discontinuation.{slug(reason)}{suffix}", "discontinuation", reason, "", gid,
                      f"discontinued: {reason}", "the group", pts, ids)
            )  # fmt: skip
            out[-1].stats = self._rate(len(pts), years, "to_discontinuation")
        return out

    def _rate(self, events: int, years: float, basis: str) -> dict[str, Any]:
        """A cell's events per 100 patient-years of ``basis`` exposure, with Garwood's exact
        interval at the cohort's level (None without exposure: an empty group)."""
        rate = incidence_rate(events, years, self.spec.ci_level)
        return {
            "exposure": basis,
            "exposure_patient_years": round(years, 4),
            "per_100_patient_years": _r(rate.value if rate else None, 4),
            "per_100_patient_years_ci": [_r(rate.lower, 4), _r(rate.upper, 4)] if rate else None,
            "ci_level": self.spec.ci_level,
        }

    def _mas_cells(self, gid: str, suffix: str, members: list[PatientFacts]) -> list[Cell]:
        ids = [f.patient_id for f in members]
        out = []
        for rel, label in MAS_ROWS.items():
            pts = [f for f in members if any(rel in ("any", e["relation"]) for e in f.mas)]
            if rel == "unknown_drug_status" and not pts:
                continue
            c = _cell(f"mas.{rel}{suffix}", "mas", rel, "", gid, label,
                      "the group: every patient in it (n: those with ≥ 1 such episode)", [f.patient_id for f in pts], ids)  # fmt: skip
            c.stats = {"episodes": sum(1 for f in members for e in f.mas if rel in ("any", e["relation"]))}
            out.append(c)
        return out


# the MAS rows by the episode's relation to the index and the drug (the last only when a
# patient has such an episode)
MAS_ROWS = {
    "any": "MAS episodes (any)",
    "before_index": "MAS episodes starting before the index",
    "on_drug": "MAS episodes starting after the index while on the drug",
    "off_drug": "MAS episodes starting after the index, off the drug",
    "unknown_drug_status": "MAS episodes after the index, drug status unknown",
}


# the adverse-event rows by action taken with the drug the AE names (codes.AE_ACTIONS) and by
# seriousness; "not_recorded" only where an AE records none
AE_ACTION_ROWS = {
    "drug_withdrawn": "action: drug withdrawn (led to its discontinuation)",
    "drug_interrupted": "action: drug interrupted",
    "dose_reduced": "action: dose reduced",
    "none": "action: none",
    "not_recorded": "action: not recorded",
}
AE_SERIOUS_ROWS = {"yes": "serious", "no": "not serious", "not_recorded": "seriousness not recorded"}


def ae_by_value(ae: dict[str, Any], row: str) -> str:
    """An adverse event's row under ``action`` or ``serious``."""
    value = ae.get(row)
    if value is None:
        return "not_recorded"
    if row == "serious":
        return "yes" if value else "no"
    return str(value)


def ae_left_out(spec: CohortSpec) -> tuple[str, ...]:
    """Why an adverse event from the index to the end of follow-up may not be counted: after the
    study drug's discontinuation (``until: on_drug``), naming another drug or none (``drug: study``)."""
    return (("after_discontinuation",) if spec.ae_until == "on_drug" else ()) + (
        ("another_drug", "no_drug_named") if spec.ae_drug == "study" else ()
    )


def _ae_which(spec: CohortSpec) -> str:
    """Which adverse events the table counts, in words."""
    if spec.ae_drug != "study":
        return "adverse events of any drug, or none named"
    if spec.drug_from_index:
        return "adverse events attributed to the index drug (the AE names it), each patient's own"
    return f"adverse events attributed to {spec.drug} (the AE names it)"


def ae_scope(spec: CohortSpec) -> str:
    """The AE cells' denominator, with the span of time they count in words."""
    which = _ae_which(spec)
    if spec.ae_until != "on_drug":
        return f"the group ({which}, from the index to the end of follow-up, after a discontinuation of the study drug too)"
    if spec.drug_from_index:
        return (
            f"the group ({which}, from the index while on the "
            "index drug, each patient's own: up to its discontinuation, that day included, or the "
            "end of follow-up)"
        )
    return (
        f"the group ({which}, from the index while on "
        f"{spec.drug}: up to its discontinuation, that day included, or the end of follow-up)"
    )


def ae_title(spec: CohortSpec) -> str:
    """The AE table's title."""
    of = "(of any drug)" if spec.ae_drug != "study" else (
        "attributed to the index drug" if spec.drug_from_index else f"attributed to {spec.drug}"
    )  # fmt: skip
    if spec.ae_until != "on_drug":
        return f"Adverse events {of} from the index to the end of follow-up, after a discontinuation too"
    if spec.drug_from_index:
        return f"Adverse events {of} while on the index drug (each patient's own): from the index to its discontinuation"
    return f"Adverse events {of} while on {spec.drug}: from the index to its discontinuation"


def disc_title(spec: CohortSpec) -> str:
    """The discontinuation table's title."""
    if spec.drug_from_index:
        return "Discontinuations of the index drug (each patient's own)"
    return f"Discontinuations of {spec.drug}"


def _drug_label(spec: CohortSpec) -> str:
    """The study drug in a row or a reason shared by patients: its name, or "index drug"
    (each patient's own, whichever it was)."""
    return "index drug" if spec.drug_from_index else str(spec.drug)


def _stopped_within(f: PatientFacts, t: TteFacts) -> bool:
    """The study drug discontinued within the patient's time-to-event window."""
    if f.disc_date is None or f.t_index is None:
        return False
    return (end_of(f.disc_date) - f.t_index).total_seconds() / 86400 <= t.window_days + 1e-6


def _unknown_past_follow_up(f: PatientFacts) -> None:
    """At a time point after the patient's follow-up ended, or after their death, every value
    is unknown: nothing recorded then is of the study, and a record still valid then (a joint
    count's 90 days) says nothing of a patient who died or left (helper 49: under `all`, a
    child who died counted with active arthritis at 6 months). An assessment window may still
    find a known day within the follow-up."""
    for tp, d in f.tp_dates.items():
        if f.death is not None and f.death < d and (f.fu_end is None or f.death <= f.fu_end):
            why = f"after the patient's death on {f.death}"
        elif f.fu_end is not None and f.fu_end < d:
            why = f"after the end of follow-up on {f.fu_end} ({f.fu_end_reason})"
        else:
            continue
        for (rule, at), r in list(f.values.items()):
            if at == tp and r.value is not None:
                f.values[(rule, at)] = Result(
                    r.rule_id, r.patient_id, r.at, r.q, r.type, None, r.unit, why, []
                )


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_CLAUSE = re.compile(r"^no (.+?) (?:recorded up to the date|up to the date|within .+)$")


def reason_key(why: str | None) -> str:
    """A reason for unknown as the patients who share it share it: without their own dates
    (``after the end of follow-up on 2007-06-19 (moved)`` → ``after the end of follow-up``;
    ``no joint exam within 90 days: the latest, on 2005-01-02, is too old`` → ``no joint exam
    within 90 days (an older one recorded)``)."""
    if not why:
        return "no reason given"
    if why.startswith("after the end of follow-up on "):
        return "after the end of follow-up"
    if why.startswith("after the patient's death on "):
        return "after the patient's death"
    why = re.sub(r": the latest, on [^,]+, is too old", " (an older one recorded)", why)
    return _ISO_DATE.sub("…", why)


def _clause_name(reason: str) -> str | None:
    """The selector a reason for unknown names (``no morning_stiffness recorded up to the date``
    → ``morning_stiffness``), if it names one."""
    m = _CLAUSE.match(reason.removesuffix(" (an older one recorded)"))
    return m.group(1) if m else None


POLICY_TEXT = {
    "all": "every patient of the group (unknown past their follow-up)",
    "followed": "patients still followed (follow-up end on or after the time point date)",
    "on_drug": "patients still followed and still on the drug at the time point",
}


def policies(spec: CohortSpec) -> dict[str, str]:
    """Each denominator policy the report uses, defined in words for this cohort."""
    ends = " or ".join(spec.end_kinds) or "no event"
    otherwise = "the last recorded event" if spec.otherwise == "last_event" else "the as-known-at date (open)"
    on = (
        f"rule {spec.on_drug_rule} true at the time point"
        if spec.on_drug_rule
        else f"{_policy_drug(spec)} not discontinued on or before the time point date (a recorded discontinuation, "
        "or a stop not followed by a restart; a stop then a restart is an interruption)"
    )
    return {
        "all": "every patient of the group, whatever their follow-up; at a time point after a patient's follow-up "
        "ended (or after death) their value is unknown",
        "followed": f"follow-up end on or after the time point date; follow-up ends at the first {ends}, else at {otherwise}",
        "on_drug": f"followed (as above) and on the drug: {on}",
    }


def _policy_drug(spec: CohortSpec) -> str:
    """The study drug in the on_drug policy's definition: with ``drug: index`` it is not one
    drug, so the definition says whose it is."""
    if spec.drug_from_index:
        return "the index drug (each patient's own: the drug of their index event)"
    return str(spec.drug)


def _cell(
    cid: str, section: str, row: str, column: str, group: str, label: str, den: str,
    numerator: Iterable[str], denominator: Iterable[str], unknown: Iterable[str] = (),
) -> Cell:  # fmt: skip
    num, dn, unk = sorted(numerator), sorted(denominator), sorted(unknown)
    return Cell(id=cid, section=section, row=row, column=column, group=group, label=label, denominator=den,
                n=len(num), N=len(dn), unknown=len(unk), numerator_ids=num, denominator_ids=dn,
                unknown_ids=unk)  # fmt: skip


def _selector_drugs(sel: ast.Selector) -> list[str]:
    return [*sel.drugs, *(d for sub in sel.any_of for d in _selector_drugs(sub))]


def spellings(times: dict[str, int]) -> dict[str, str]:
    """Each text (an AE term, a discontinuation reason), given with how often it is written, →
    the spelling its row is shown under. Texts whose cell ids would be the same (``Inefficacy``
    and ``inefficacy``, ``injection-site reaction`` and ``injection site reaction``) are one row,
    under the spelling written most often (of equally common ones, the first in sorted order):
    two rows with one id would leave a reader, and ``cohort patients --cell``, one of them."""
    counts: dict[str, dict[str, int]] = {}
    for text, n in times.items():
        written = counts.setdefault(slug(text), {})
        written[text] = written.get(text, 0) + n
    return {
        text: min(written, key=lambda w: (-written[w], w)) for written in counts.values() for text in written
    }


def ae_keys(ae: dict[str, Any]) -> list[tuple[str, str]]:
    return [(ae["term"], f"grade {ae['grade']}"), (ae["term"], "any grade"), ("any", "any grade")]


KM_CI_TEXT = {
    "log-log": "Greenwood variance, log(-log S) transform (SAS PROC LIFETEST and Stata default); median: Brookmeyer-Crowley",
    "log": "Greenwood variance, log S transform (R survfit default); median: Brookmeyer-Crowley",
}
CIF_CI_TEXT = {
    "log-log": "Aalen-Johansen cumulative incidence, delta-method variance (Collett; Marubini-Valsecchi), "
    "log(-log F) transform",
    "log": "Aalen-Johansen cumulative incidence, delta-method variance (Collett; Marubini-Valsecchi), log F transform",
}
RATE_CI_TEXT = "events per 100 patient-years, exact Poisson (Garwood) interval"
EXPOSURE_TEXT = {
    "follow_up": "from the index instant to the end of the last day of follow-up (or of the day of death)",
    "on_drug": "from the index instant to the end of the study drug's discontinuation day, or of the last "
    "day of follow-up (or of death) if earlier; an interruption does not end it",
    "to_discontinuation": "from the index instant to the end of the study drug's discontinuation day, or "
    "for a patient not discontinued of the last day of follow-up (or of death)",
}
YEAR_DAYS = 365.25


def methods(spec: CohortSpec) -> dict[str, Any]:
    """How the report's intervals and rates are computed, for its JSON."""
    return {
        "ci_level": spec.ci_level,
        "kaplan_meier_ci": KM_CI_TEXT[spec.km_transform],
        **(
            {"cumulative_incidence_ci": CIF_CI_TEXT[spec.km_transform]}
            if any(t.competing for t in spec.time_to_event)
            else {}
        ),
        "rates": RATE_CI_TEXT,
        "exposure": {
            "adverse_events": EXPOSURE_TEXT["on_drug" if spec.ae_until == "on_drug" else "follow_up"],
            "discontinuations": EXPOSURE_TEXT["to_discontinuation"],
            "year": f"{YEAR_DAYS} days",
        },
    }


def exposure_days(f: PatientFacts, basis: str) -> float:
    """A patient's exposure in days: from the index instant to the end of the last day the table
    counts (that day included, as CDISC ADaM's treatment duration end − start + 1), which is
    the end of follow-up (``follow_up``), or the study drug's discontinuation day if earlier
    (``on_drug``, as the AE table's ``until: on_drug``), or the discontinuation day whenever it
    is (``to_discontinuation``: the time at risk of the discontinuation the table counts). It
    ends at death in each case, whether or not follow_up.end lists it: no one is exposed after."""
    if f.t_index is None or f.fu_end is None:
        return 0.0
    end = f.fu_end
    if basis == "to_discontinuation" and f.disc_date is not None:
        end = f.disc_date
    elif basis == "on_drug" and f.disc_date is not None:
        end = min(end, f.disc_date)
    if f.death is not None:
        end = min(end, f.death)
    span = datetime.combine(end, datetime.min.time()) + DAY - f.t_index
    return max(span.total_seconds() / 86400, 0.0)


def exposure_years(members: Iterable[PatientFacts], basis: str) -> float:
    """The group's exposure in patient-years (365.25 days)."""
    return sum(exposure_days(f, basis) for f in members) / YEAR_DAYS


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _pct(p: float | None) -> float | None:
    """A proportion as the percentage printed: one decimal, a half rounded up, from the unrounded
    value (not rounded twice)."""
    return None if p is None else float(one_decimal(Decimal(repr(100 * p))))


def one_decimal(x: Decimal) -> Decimal:
    """``x`` to one decimal, a half rounded up, as study tables print percentages."""
    return x.quantize(Decimal("0.1"), ROUND_HALF_UP)


def days_text(n: float) -> str:
    """A number of days as a reader writes it: 1 day, 2 days, 1.5 days."""
    return f"{n:g} day" + ("" if n == 1 else "s")


def _days(span: timedelta) -> float:
    """A time span in days, rounded so that the end of a day counts as the whole day."""
    return round(span.total_seconds() / 86400, 4)


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _censored_summary(values: list[tuple[float, str | None]]) -> dict[str, Any]:
    """:func:`_summary` of values some of which may be censored (``(5, "<")`` for ``<5``),
    each standing for the range of numbers beyond its bound. Without one, :func:`_summary`.
    With one: ``min`` and ``max`` are those of every number the values may be
    (:func:`timeline.engine.censored.extreme`: exact, or a bound with ``min_qualifier`` /
    ``max_qualifier``: the max of ``<5`` and 8 is 8, of ``>5`` and 8 ``>=8``); the median is
    given only where it is the same whatever numbers the censored values stand for (each put
    at the low end of its range, then at the high end: a median is monotone in every value,
    so equal medians are it — ``<5``, 6, 8 have the median 6), else None; the mean, which
    every number moves, is None. ``censored``: how many values are; ``not_determined``: the
    figures left None by them."""
    if all(q is None for _, q in values):
        return _summary([v for v, _ in values])
    ranges = [range_of(v, q) for v, q in values]
    low = statistics.median([r.lo for r in ranges])
    high = statistics.median([r.hi for r in ranges])
    median = round(low, 2) if low == high and math.isfinite(low) else None
    lo, lo_q = extreme("min", values)
    hi, hi_q = extreme("max", values)
    return {
        "mean": None,
        "median": median,
        "min": round(lo, 2),
        "min_qualifier": lo_q,
        "max": round(hi, 2),
        "max_qualifier": hi_q,
        "censored": sum(1 for _, q in values if q is not None),
        "not_determined": ["mean", *(["median"] if median is None else [])],
    }


__all__ = ["Cell", "PatientFacts", "Report", "end_of", "exposure_days", "methods", "policies", "run_cohort"]
