"""Why one patient is or is not in the population, a sub-group, a numerator or a denominator.

The report is re-run for that patient alone (every cell is a per-patient decision, so the
answer is the same as in the full run), and the rule behind the asked cell is explained
with :meth:`Session.explain` at the instant the report used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timeline.cohort.report import (
    MAS_ROWS,
    Cell,
    PatientFacts,
    Report,
    ae_by_value,
    ae_keys,
    ae_left_out,
    days_text,
    end_of,
    run_cohort,
)
from timeline.cohort.spec import CohortSpec, slug
from timeline.engine.evaluate import Result, Session
from timeline.errors import UsageError
from timeline.language.loader import did_you_mean

_DYNAMIC = ("ae", "discontinuation", "mas")  # rows that exist only where a patient has events


def _value(r: Result | None) -> Any:
    if r is None or r.value is None:
        return "unknown"
    return r.value


def _at(t: datetime) -> str:
    """An instant as `--at` text: a date when it is the end of a day (as the report uses)."""
    if t == end_of(t.date()):
        return t.date().isoformat()
    return t.isoformat()


def role(cell: Cell, patient: str) -> str:
    if patient in cell.numerator_ids:
        return "numerator"
    if patient in cell.unknown_ids:
        return "unknown (in the denominator, not in the numerator)"
    if patient in cell.unknown_moment_ids:
        return "not reached, with moments the rule was unknown (might have reached it unseen)"
    if patient in cell.denominator_ids:
        return "denominator only"
    return "not in the denominator"


def explain_patient(
    session: Session, spec: CohortSpec, patient: str, cell_id: str | None = None
) -> dict[str, Any]:
    """The patient's path through the report as data; with ``cell_id``, the derivation of
    that cell's rule for this patient down to the events used."""
    report = run_cohort(session, spec, patients=[patient])
    f = report.patients[patient]
    out: dict[str, Any] = {
        "manifest": report.manifest,
        "patient_id": patient,
        "index": _index(f),
        "population": _population(spec, f),
        "subgroups": [
            {"id": g.id, "label": g.label, "member": g.id in f.groups, "why": _subgroup_why(f, g.id)}
            for g in spec.subgroups
        ],
        "follow_up": {
            "end": f.fu_end,
            "why": f.fu_end_reason,
            "death": f.death,
            # the study drug followed for this patient (with `drug: index`, their index event's)
            "drug": f.drug,
            "discontinued": f.disc_date,
            "discontinuation_reason": f.disc_reason,
            "discontinuation_events": f.disc_events,
        },
        "time_points": [
            {
                "time_point": tp.label,
                "date": f.tp_dates.get(tp.slug),
                # only what the report reads at this time point (an outcome's `at:`)
                # rule → value, as the report read it (the first outcome of the rule there)
                "values": {
                    o.rule: _value(f.values.get((o.rule, o.where(tp.slug))))
                    for o in reversed(spec.outcomes)
                    if tp.slug in o.time_points
                },
                # outcome → its rule, value and the day it was assessed on: the time point's
                # date, or with an assessment window, the day whose state the report took
                "outcomes": {
                    o.id: {
                        "rule": o.rule,
                        "value": _value(f.values.get((o.rule, o.where(tp.slug)))),
                        "assessed_on": f.assessed.get((o.id, tp.slug), f.tp_dates[tp.slug]),
                        "window": o.window.to_json() if o.window else None,
                    }
                    for o in spec.outcomes
                    if tp.slug in o.time_points
                },
            }
            for tp in spec.time_points
            if tp.slug in f.tp_dates
        ],
        "time_to_event": {
            tid: {
                "reached": t.event,
                "at": t.at,
                "days": t.days,
                "censored_by": t.censored_by,
                # censored_by is a competing event (the item lists it under competing)
                "competing": t.competing,
                "unknown_on_the_way": t.unknown,
            }
            for tid, t in f.tte.items()
        },
        "cells": [
            {"cell": c.id, "role": role(c, patient), "label": c.label, "column": c.column}
            for c in report.cells
            if c.group == "all" or c.group in f.groups
        ],
    }
    if cell_id is not None:
        out["cell"] = _cell(session, spec, report, f, cell_id)
    return out


def _index(f: PatientFacts) -> dict[str, Any] | None:
    if f.t_index is None:
        return None
    return {"event_id": f.index_event, "seq": f.index_seq, "occurred_at": f.t_index, "date": f.index_date}


def _subgroup_why(f: PatientFacts, group: str) -> str:
    """Sub-groups are decided for the population only: outside it, say why in words."""
    if group in f.subgroup_detail:
        return f.subgroup_detail[group]
    if f.t_index is None:
        return "not evaluated: no index event"
    return "not evaluated: not in the population"


def _population(spec: CohortSpec, f: PatientFacts) -> dict[str, Any]:
    rules = []
    for kind, ids in (("include", spec.include), ("exclude", spec.exclude)):
        for rid in ids:
            r = f.values.get((rid, "population"))
            if f.t_index is None:  # the rules are read at the index: there is no instant
                rules.append({"rule": rid, "role": kind, "value": "not evaluated", "reason": "no index event",
                              "detail": None})  # fmt: skip
                continue
            rules.append(
                {"rule": rid, "role": kind, "value": _value(r), "reason": r.why if r else None,
                 "detail": r.note if r else None}
            )  # fmt: skip
    return {
        "status": f.status,
        "reasons": f.reasons,
        "evaluated_at": _at(f.q_population) if f.q_population else None,
        "rules": rules,
    }


def _require_possible(session: Session, spec: CohortSpec, report: Report, cell_id: str) -> None:
    """A row that exists only where a patient has events (an adverse event's term and grade, a
    discontinuation's reason, a MAS relation) and that this patient lacks: refused unless some
    patient of the store, as known at the report's moment, could have it, so that a misspelt
    id is an error rather than "no such events"."""
    base, _, group = cell_id.partition("@")
    section = base.split(".", 1)[0]
    suffixes = [""] + [f"@{g.id}" for g in spec.subgroups]
    possible: list[str] = []
    if section == "ae" and spec.adverse_events:
        terms = session.con.execute(
            f"""SELECT DISTINCT lower(term), grade FROM ({
                session.store.current_sql(
                    session.high_water, kinds=["adverse_event"], columns=["term", "grade"]
                )
            })"""
        ).fetchall()
        keys = {key for term, grade in terms for key in ae_keys({"term": term, "grade": grade})}
        possible = [f"ae.{slug(t)}.{slug(g)}" for t, g in keys | {("any", "any grade")}]
    elif section == "discontinuation" and spec.discontinuations and spec.drug:
        reasons = session.con.execute(
            f"""SELECT DISTINCT reason FROM ({
                session.store.current_sql(
                    session.high_water, kinds=["discontinuation", "medication_stop"], columns=["reason"]
                )
            }) WHERE reason IS NOT NULL"""
        ).fetchall()
        possible = [
            f"discontinuation.{slug(r)}" for r in ["any", "no reason recorded", *(r for (r,) in reasons)]
        ]
    elif section == "mas" and spec.mas is not None:
        possible = [f"mas.{rel}" for rel in MAS_ROWS]
    ids = [p + s for p in sorted(possible) for s in suffixes]
    if cell_id not in ids:
        known = ids + [c.id for c in report.cells]
        why = {"ae": "no adverse event of the store has this term and grade",
               "discontinuation": "no discontinuation or stop in the store gives this reason",
               "mas": "not a MAS row"}[section]  # fmt: skip
        if not possible:
            why = f"this cohort file reports no {section.replace('ae', 'adverse event')} rows"
        elif group and f"@{group}" not in suffixes:
            why = f"no sub-group {group!r}"
        raise UsageError(f"no cell {cell_id!r} in this report: {why}{did_you_mean(cell_id, known)}")


def _cell(
    session: Session, spec: CohortSpec, report: Report, f: PatientFacts, cell_id: str
) -> dict[str, Any]:
    base = cell_id.split("@", 1)[0]
    section, _, rest = base.partition(".")
    try:
        cell = report.cell(cell_id)
    except UsageError:
        if section not in _DYNAMIC:
            raise
        left = [ae for ae in f.ae_not_counted
                if section == "ae" and any(f"{slug(t)}.{slug(g)}" == rest for t, g in ae_keys(ae))]  # fmt: skip
        if not left:
            _require_possible(session, spec, report, cell_id)
        # the row's denominator is the group: a member without such events is in it, uncounted
        group = cell_id.partition("@")[2] or "all"
        member = f.patient_id in report.groups.get(group, ("", []))[1]
        where = "denominator only" if member else "not in the denominator"
        if left:  # attributed to another drug or none: say so rather than "no such events"
            why = {"after_discontinuation": f"after the discontinuation of {f.drug} ({f.disc_date})",
                   "another_drug": "naming another drug", "no_drug_named": "naming no drug"}  # fmt: skip
            reasons = ", ".join(dict.fromkeys(why[ae["not_counted"]] for ae in left))
            return {"cell": cell_id, "role": f"{where}: its adverse events of this term are {reasons}",
                    "not_counted": left, "explanations": []}  # fmt: skip
        return {"cell": cell_id, "role": f"{where}: the patient has no such events", "explanations": []}
    out: dict[str, Any] = {"cell": cell_id, "label": cell.label, "role": role(cell, f.patient_id),
                           "denominator": cell.denominator, "explanations": []}  # fmt: skip
    ex: list[dict[str, Any]] = out["explanations"]

    def explain(rule_id: str, at: datetime | None, why: str) -> None:
        if at is None:
            ex.append(
                {"rule": rule_id, "why": why, "explanation": None, "note": "no instant: no index event"}
            )
            return
        tree = session.explain(f.patient_id, rule_id, _at(at))
        tree.pop("manifest", None)  # the same as the report's
        ex.append({"rule": rule_id, "why": why, "explanation": tree})

    if section == "population":
        for kind, ids in (("include", spec.include), ("exclude", spec.exclude)):
            for rid in ids:
                if rest == "included" or rest == f"{kind}.{rid}":
                    explain(rid, f.q_population, f"{kind} rule at the {spec.evaluate_at.replace('_', ' ')}")
        if f.t_index is None:
            out["detail"] = f"no index event: no {spec.index.name} recorded"
    elif section == "subgroup":
        g = next(g for g in spec.subgroups if g.id == rest)
        out["detail"] = f.subgroup_detail.get(g.id)
        if g.rule:
            explain(g.rule, end_of(f.t_index.date()) if f.t_index else None, "sub-group rule at the index")
    elif section == "baseline":
        b = next((b for b in spec.baseline if b.id == rest), None)
        if b is not None:
            explain(b.rule, end_of(f.t_index.date()) if f.t_index else None, "baseline value at the index")
        else:
            out["detail"] = f"follow-up from {f.index_date} to {f.fu_end} ({f.fu_end_reason})"
    elif section == "outcome":
        oid, _, tp = rest.rpartition(".")
        o = next(o for o in spec.outcomes if o.id == oid)
        day = f.tp_dates.get(tp)
        out["denominator_detail"] = _denominator(spec, f, o.denominator, day)
        if day is not None and (o.id, tp) in f.assessed:
            other = f.assessed[(o.id, tp)]
            on = ""
            if o.denominator == "on_drug":
                on = (
                    f" and {spec.on_drug_rule} is true"
                    if spec.on_drug_rule
                    else f", before {f.drug} was discontinued"
                )
            out["assessment"] = (
                f"unknown on {day}; assessed on {other}, the nearest day within the assessment "
                f"window {o.window} with a recorded event on which {o.rule} is known{on}"
            )
            explain(o.rule, end_of(other), f"outcome at {tp.replace('_', ' ')} ({day}), assessed on {other}")
        elif day is not None:
            explain(o.rule, end_of(day), f"outcome at {tp.replace('_', ' ')} ({day})")
        if day is not None and o.denominator == "on_drug" and spec.on_drug_rule:
            explain(spec.on_drug_rule, end_of(day), "on the drug (on_drug denominator)")
    elif section == "tte":
        t = next(t for t in spec.time_to_event if t.id == rest)
        facts = f.tte.get(t.id)
        if facts is not None:
            out["detail"] = (
                f"reached {days_text(facts.days)} after the index ({_at(facts.at)})"
                if facts.event
                else f"not reached; {'a competing event' if facts.competing else 'censored by'} {facts.censored_by} "
                f"at {_at(facts.at)} ({days_text(facts.days)})"
            )
            explain(
                t.rule,
                facts.at,
                (
                    "first instant of the spell that lasted"
                    if t.sustained
                    else "first instant the outcome held"
                )
                if facts.event
                else "value at the censoring",
            )
    elif section == "ae":
        # the patient's adverse events this cell counts (its term and grade), beside the
        # study drug's discontinuation
        out["events"] = [ae for ae in f.adverse_events if (cell.row, cell.column) in ae_keys(ae)]
        if ae_left_out(spec):  # those of the term the span or the attribution left out, and why
            out["not_counted"] = [ae for ae in f.ae_not_counted if (cell.row, cell.column) in ae_keys(ae)]
        out["detail"] = _discontinued(f)
    elif section in ("ae_action", "ae_serious"):
        # the patient's counted adverse events with this action taken, or this seriousness
        out["events"] = [ae for ae in f.adverse_events if ae_by_value(ae, cell.row) == cell.column]
        out["detail"] = _discontinued(f)
    elif section == "discontinuation":
        out["detail"] = {"date": f.disc_date, "reason": f.disc_reason, "events": f.disc_events}
    elif section == "mas":
        # each episode with its events in full, and how its relation to the drug was decided
        rule = (spec.mas.on_drug_rule if spec.mas else None) or spec.on_drug_rule
        out["episodes"] = []
        for ep in f.mas:
            out["episodes"].append({**ep, "events": session.events_of(sorted(ep["evidence"]))})
            if rest not in ("any", ep["relation"]):
                continue
            start = ep["start"]
            if ep["relation"] == "before_index":
                ep_why = f"it starts before the index ({_at(f.t_index)})" if f.t_index else "before the index"
                out["episodes"][-1]["decided_by"] = ep_why
            elif rule is not None:
                onset = start.date().isoformat() if start.time() == start.min.time() else _at(start)
                explain(rule, start, f"on the drug at the onset of the episode of {onset} (rule {rule})")
            else:
                stop = f"{f.drug} discontinued {f.disc_date}" if f.disc_date else f"{f.drug} not discontinued"
                index = _at(f.t_index) if f.t_index else "?"
                side = "on or after" if ep["relation"] == "off_drug" else "before"
                out["episodes"][-1]["decided_by"] = (
                    f"after the index ({index}) and {side} the discontinuation: {stop}"
                )
    return out


def _denominator(spec: CohortSpec, f: PatientFacts, policy: str, day: Any) -> str:
    if day is None:
        return "no time point: the patient is not in the population"
    if policy == "all":
        return "policy all: every patient of the group"
    followed = f.fu_end is not None and f.fu_end >= day
    text = f"follow-up ends {f.fu_end} ({f.fu_end_reason}): {'on or after' if followed else 'before'} {day}"
    if policy == "followed":
        return f"policy followed: {text}"
    if spec.on_drug_rule:
        return f"policy on_drug: {text}; and rule {spec.on_drug_rule} at {day} (see its explanation)"
    stop = (
        f"stopped {f.disc_date} ({f.disc_reason or 'no reason recorded'})" if f.disc_date else "never stopped"
    )
    drug = f"{f.drug} (the index drug)" if spec.drug_from_index else spec.drug
    return f"policy on_drug: {text}; {drug} {stop}"


def _discontinued(f: PatientFacts) -> str:
    """Whether and why the patient's study drug was discontinued, as an AE row's detail."""
    if f.disc_date:
        return f"{f.drug} discontinued {f.disc_date} ({f.disc_reason or 'no reason recorded'})"
    return f"{f.drug} not discontinued" if f.drug else "no study drug"


__all__ = ["explain_patient", "role"]
