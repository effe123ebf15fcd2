"""The engine agrees with the plain-Python reference evaluator (tests/reference.py) on random
timelines and random rules — values, unknown reasons and evidence — for every rule, every
node of every rule (each compiled on its own, so a wrong inner value cannot hide behind the
root) and every clause of an explanation; and a patient's history intervals agree with the
states at the end of every day and at every event time and window edge.

Timelines sit around month ends and near the thresholds the rules use (CRP 6 mg/L written as
0.6 mg/dL, 38.0 °C written as 100.4 °F, ferritin 684), some lab values censored (``<6``,
``>=684``: below or above an assay's limit, each qualifier at and around the thresholds), with date-only and minute-precision
times, several events at one instant, batches recorded out of order, corrections (of events
that share their instant with another too, of a value or only of a note or reference range), and
anakinra starts, dose changes and stops with weights. Rules are drawn from a typed grammar
of the operators with thresholds in several units, windows in hours, days, weeks and
months with either bound inclusive, anchored windows and site parameter overrides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.engine_support import disagreement, same_number, store_with, write_rule
from timeline.engine.compiler import Compiler
from timeline.engine.evaluate import Result, Session
from timeline.engine.replay import EPS, Reference, Val, add_months, end_of_day
from timeline.ingest import correct
from timeline.language import ast
from timeline.language.loader import RuleSet, load_rules, walk
from timeline.store import Store

# Each example builds a store and compiles a few rules (a fraction of a second on 2 cores).
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HISTORY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- timelines -------------------------------------------------------------------------------

ORIGIN = date(2009, 1, 24)  # the timelines span the end of January and of February
DAYS = 42
CLOCK = [None, None, "00:00", "08:00", "23:59"]  # None: a date-only event
HOT_DAYS = [4, 5, 6, 7, 34, 35, 36, 37]  # 28-31 January, 27 February-2 March

# a lab value's qualifier: most are exact (None), some censored (<6 mg/L, >=684 ng/mL)
QUALIFIERS = [None, None, None, None, "<", "<=", ">", ">="]
CRP = [(5.9, "mg/L"), (6, "mg/L"), (6.1, "mg/L"), (0.6, "mg/dL"), (0.61, "mg/dL"), (12, "mg/L"), (0, "mg/L")]
ESR = [(19, "mm/h"), (20, "mm/h"), (21, "mm/h")]
FERRITIN = [(683, "ng/mL"), (684, "ng/mL"), (685, "ng/mL"), (684, "ug/L")]
TEMPERATURE = [(37.9, "Cel"), (38.0, "Cel"), (38.1, "Cel"), (100.4, "[degF]")]
DOSES = [(50, "mg"), (100, "mg"), (2, "mg/kg")]


def when(day: int, clock: str | None) -> str:
    d = (ORIGIN + timedelta(days=day)).isoformat()
    return d if clock is None else f"{d}T{clock}"


@st.composite
def event(draw: st.DrawFn, patient: str) -> dict[str, Any]:
    day = draw(st.one_of(st.integers(0, DAYS), st.sampled_from(HOT_DAYS)))
    row: dict[str, Any] = {"patient_id": patient, "occurred_at": when(day, draw(st.sampled_from(CLOCK)))}
    kind = draw(
        st.sampled_from(
            [
                "crp",
                "crp",
                "esr",
                "ferritin",
                "temperature",
                "temperature",
                "finding",
                "joints",
                "drug",
                "weight",
                "mas",
            ]
        )
    )
    if kind in ("crp", "esr", "ferritin"):
        code = {"crp": "1988-5", "esr": "4537-7", "ferritin": "2276-4"}[kind]
        value, unit = draw(st.sampled_from({"crp": CRP, "esr": ESR, "ferritin": FERRITIN}[kind]))
        qualifier = draw(st.sampled_from(QUALIFIERS))
        row.update(
            kind="lab", code=code, value=value if qualifier is None else f"{qualifier}{value}", unit=unit
        )
        if kind == "crp" and draw(st.booleans()):
            row.update(ref_low=0, ref_high=10 if unit == "mg/L" else 1)
    elif kind == "temperature":
        value, unit = draw(st.sampled_from(TEMPERATURE))
        row.update(kind="body_temperature", value=value, unit=unit)
    elif kind == "finding":
        row.update(kind="finding", code=draw(st.sampled_from(["fever", "fever", "rash"])))
        present = draw(st.sampled_from([None, True, False]))
        if present is not None:
            row["present"] = present
        length = draw(st.sampled_from([None, None, None, 0, 2, 10]))  # a finding recorded with an end
        if length is not None and present is not False:
            row["ended_at"] = when(day + length, draw(st.sampled_from([None, "12:00"])))
            if row["ended_at"] < row["occurred_at"]:
                row["ended_at"] = row["occurred_at"]
    elif kind == "joints":
        row.update(kind="joint_exam", active_joints=draw(st.integers(0, 3)))
    elif kind == "drug":
        which = draw(
            st.sampled_from(
                ["medication_start", "medication_start", "medication_dose_change", "medication_stop"]
            )
        )
        row.update(kind=which, drug="anakinra")
        route = draw(st.sampled_from([None, "sc", "topical"]))
        if route is not None and which != "medication_stop":  # a stop has no route
            row["route"] = route
        if which != "medication_stop":
            dose, unit = draw(st.sampled_from(DOSES))
            row.update(dose=dose, dose_unit=unit)
            frequency = draw(st.sampled_from(["daily", "daily", "bid", None]))
            if frequency:
                row["frequency"] = frequency
    elif kind == "weight":
        row.update(kind="weight", value=draw(st.sampled_from([20, 25])), unit="kg")
    else:
        row["kind"] = "mas_episode"
        length = draw(st.sampled_from([None, 0, 1, 3, 10]))
        if length is not None:
            row["ended_at"] = when(day + length, draw(st.sampled_from([None, "12:00"])))
            if row["ended_at"] < row["occurred_at"]:
                row["ended_at"] = row["occurred_at"]
    return row


@dataclass
class Timeline:
    batches: list[list[dict[str, Any]]]
    corrections: list[tuple[str, dict[str, str]]]
    patients: list[str]


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    patients = ["P1", "P2", "P3"][: draw(st.integers(1, 3))]
    rows: list[dict[str, Any]] = []
    for p in patients:
        rows += draw(st.lists(event(p), min_size=2, max_size=18))
        if draw(st.booleans()) and rows:  # several events at one instant
            twin = dict(draw(st.sampled_from([r for r in rows if r["patient_id"] == p])))
            if twin["kind"] in ("lab", "body_temperature"):
                twin["value"] = 39.0 if twin["kind"] == "body_temperature" else 5
                if twin["kind"] == "body_temperature":
                    twin["unit"] = "Cel"
                rows.append(twin)
        if draw(st.integers(0, 3)) == 0:  # two anakinra starts at one instant
            at = when(draw(st.sampled_from(HOT_DAYS)), draw(st.sampled_from(CLOCK)))
            for dose in (50, 100):
                rows.append(
                    {
                        "patient_id": p,
                        "occurred_at": at,
                        "kind": "medication_start",
                        "drug": "anakinra",
                        "dose": dose,
                        "dose_unit": "mg",
                        "frequency": "daily",
                    }
                )
    for i, r in enumerate(rows):
        r["event_id"] = f"e{i}"
    order = draw(st.permutations(range(len(rows))))
    cut = draw(st.integers(0, len(rows)))
    batches = [[rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]]
    corrections = []
    labs = [r for r in rows if r["kind"] == "lab" and r["code"] == "1988-5"]
    if labs and draw(st.booleans()):
        target = draw(st.sampled_from(labs))
        value = draw(st.sampled_from([v for v in (1, 6, 60, "<6", ">=6") if v != target["value"]]))
        corrections.append((target["event_id"], {"value": str(value)}))
    # an event that shares its instant with another, corrected: the correction must not move it
    # past the other (events of one instant are ordered by when they were asserted)
    untouched = [r for r in tied(rows) if r["event_id"] not in dict(corrections)]
    if untouched and draw(st.booleans()):
        target = draw(st.sampled_from(untouched))
        corrections.append((target["event_id"], draw(changes_of(target))))
    return Timeline(batches, corrections, patients)


def tied(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that share their patient and instant with another row."""
    at = [(r["patient_id"], datetime.fromisoformat(r["occurred_at"])) for r in rows]
    return [r for r, key in zip(rows, at, strict=True) if at.count(key) > 1]


@st.composite
def changes_of(draw: st.DrawFn, row: dict[str, Any]) -> dict[str, str]:
    """A correction of a row: of its note (which no rule reads), its value or its reference range."""
    options: list[dict[str, str]] = [{"note": "checked again"}]
    if row["kind"] in ("lab", "body_temperature", "weight"):
        exact = float(str(row["value"]).lstrip("<>="))  # a censored value corrected to an exact one
        options.append({"value": str(exact + 1)})
    if row["kind"] == "lab":
        options.append({"ref_low": "0", "ref_high": str(row.get("ref_high", 0) + 7)})
    if row.get("dose") is not None:
        options.append({"dose": str(row["dose"] * 2)})
    return draw(st.sampled_from(options))


@st.composite
def noted_ties(draw: st.DrawFn) -> Timeline:
    """A timeline with events that share their instant, some of which had only their note
    corrected (and nothing else)."""
    tl = draw(timelines())
    rows = [r for b in tl.batches for r in b]
    if not tied(rows):
        twin = {**draw(st.sampled_from(rows)), "event_id": f"e{len(rows)}"}
        tl.batches[draw(st.integers(0, 1))].append(twin)
        rows.append(twin)
    noted = draw(
        st.lists(st.sampled_from(tied(rows)), min_size=1, max_size=3, unique_by=lambda r: r["event_id"])
    )
    return Timeline(tl.batches, [(r["event_id"], {"note": "checked again"}) for r in noted], tl.patients)


def build_store(path: Path, tl: Timeline) -> Store:
    store = store_with(path, *tl.batches)
    for event_id, changes in tl.corrections:
        correct(store, event_id, changes, reason="typo", author="tests")
    return store


# ---- rules ------------------------------------------------------------------------------------

SELECTORS: dict[str, Any] = {
    "crp": {"kind": "lab", "code": "1988-5"},
    "esr": {"kind": "lab", "code": "4537-7"},
    "ferritin": {"kind": "lab", "code": "2276-4"},
    "temperature": {"kind": "body_temperature"},
    "febrile": {"kind": "body_temperature", "where": {"value": {"ge": {"param": "fever"}}}},
    "fever_finding": {"kind": "finding", "code": "fever", "present": True},
    "afebrile": {"kind": "finding", "code": "fever", "present": False},
    "fever_event": {"any_of": ["febrile", "fever_finding"]},
    "temperature_record": {"any_of": [{"kind": "body_temperature"}, {"kind": "finding", "code": "fever"}]},
    "rash": {"kind": "finding", "code": "rash"},
    "fever_or_rash": {"kind": "finding", "code": ["fever", "rash"]},
    "high_crp": {"kind": "lab", "code": "1988-5", "where": {"value": {"gt": "0.6 mg/dL"}}},
    "joints": {"kind": "joint_exam"},
    "anakinra_start": {"kind": "medication_start", "drug": "anakinra"},
    "anakinra_event": {
        "kind": ["medication_start", "medication_dose_change", "medication_stop"],
        "drug": "anakinra",
    },
    "mas": {"kind": "mas_episode"},
    # doses are stored in mg or mg/kg: a selector whose dose is read fixes which
    "anakinra_mg": {
        "kind": ["medication_start", "medication_dose_change"],
        "drug": "anakinra",
        "dose_unit": "mg",
    },
    "anakinra_mg_kg": {"kind": ["medication_start", "medication_dose_change"], "dose_unit": "mg/kg"},
    "big_dose": {"kind": "medication_start", "dose_unit": "mg", "where": {"dose": {"ge": 100}}},
}
PARAMS: dict[str, Any] = {
    "fever": {"default": "38.0 Cel"},
    "crp_upper": {"default": "6 mg/L"},
    "validity": {"default": "7 days"},
    "flag": {"default": True},
    "days": {"default": 5, "unit": "d"},
}
DURATIONS = [
    "12 hours",
    "1 day",
    "2 days",
    "7 days",
    "1 week",
    "2 weeks",
    "30 days",
    "1 month",
    {"param": "validity"},
]
THRESHOLDS: dict[str, list[Any]] = {
    "crp": ["6 mg/L", "0.6 mg/dL", "5.9 mg/L", "6.1 mg/L", "10 mg/L", {"param": "crp_upper"}],
    "esr": ["20 mm/h", "19 mm/h"],
    "ferritin": ["684 ng/mL", "684 ug/L", "683 ng/mL"],
    "temperature": ["38.0 Cel", "100.4 [degF]", "37.9 Cel", {"param": "fever"}],
    "joints": [0, 1, 2],
    "count": [0, 1, 2],
    "dose_kg": [0, 2, 4, 5],
    "dose_day": [0, 50, 100, 200],
    "dose_mg": [0, 50, 100, "0.1 g"],
    "dose_mg_kg": [0, 1, 2, 3],
    "pct": [-30, 0, 30],
    "ratio": [0, 0.5, 1],
    # time since an event: a count of whole days that steps at midnight, with no event there
    "since": [0, 1, 3, "10 d", "2 wk", "0.5 mo", {"param": "days"}],
}
MEASURED = {"crp": "crp", "esr": "esr", "ferritin": "ferritin", "temperature": "temperature"}


@st.composite
def window(draw: st.DrawFn) -> Any:
    shape = draw(st.sampled_from(["duration", "duration", "explicit", "anchored", "ever"]))
    if shape == "duration":
        return draw(st.sampled_from(DURATIONS))
    if shape == "ever":
        return "ever"
    if shape == "explicit":
        return {
            "start": draw(st.sampled_from(["-7 days", "-1 month", "-2 days", "-36 hours", "ever"])),
            "end": draw(st.sampled_from(["0 days", "0 days", "-1 days", "1 day", "2 days"])),
            "start_inclusive": draw(st.booleans()),
            "end_inclusive": draw(st.booleans()),
        }
    w: dict[str, Any] = {
        "start": draw(st.sampled_from(["0 days", "-1 days", "1 day", "ever"])),
        "start_inclusive": draw(st.booleans()),
        "anchor": {draw(st.sampled_from(["first", "last"])): "anakinra_start"},
    }
    end = draw(st.sampled_from([None, "14 days", "1 month", "3 days"]))
    if end is not None:
        w.update(end=end, end_inclusive=draw(st.booleans()))
    return w


class Grammar:
    """Random, well-typed expressions. Numbers carry a unit class (see THRESHOLDS)."""

    def __init__(self, draw: st.DrawFn, earlier: dict[str, str]) -> None:
        self.draw = draw
        self.earlier = earlier  # rule id -> "bool" or a unit class

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def num(self, depth: int, cls: str | None = None) -> tuple[Any, str]:
        d = self.draw
        if cls is None:
            cls = self.pick(
                [
                    "crp",
                    "crp",
                    "temperature",
                    "esr",
                    "ferritin",
                    "joints",
                    "count",
                    "dose_kg",
                    "dose_day",
                    "dose_mg",
                    "dose_mg_kg",
                    "pct",
                    "ratio",
                    "since",
                ]
            )
        refs = [r for r, c in self.earlier.items() if c == cls]
        if refs and d(st.integers(0, 5)) == 0:
            return {"rule": self.pick(refs)}, cls
        if depth > 0 and cls not in ("pct", "ratio") and d(st.booleans()):
            ops = [
                "add",
                "sub",
                "min_of",
                "max_of",
                "clip",
                "clip",
                "coalesce",
                "unknown_unless",
                "at_anchor",
            ]
            if cls == "since":
                # a sum of two counts of days crosses a threshold on a day that depends on both
                # anchors' dates: no change point of its own (README, a known limit)
                ops = [o for o in ops if o not in ("add", "sub")]
            op = self.pick(ops)
            if op in ("add", "sub", "min_of", "max_of", "coalesce"):
                return {op: [self.num(depth - 1, cls)[0], self.num(depth - 1, cls)[0]]}, cls
            if op == "clip":
                return {"clip": {"value": self.num(depth - 1, cls)[0], "low": 1, "high": 10}}, cls
            if op == "unknown_unless":
                return {
                    "unknown_unless": {
                        "value": self.num(depth - 1, cls)[0],
                        "condition": self.bool(depth - 1),
                        "reason": "too little recorded",
                    }
                }, cls
            return {"at_anchor": self.anchored(self.num(depth - 1, cls)[0])}, cls
        if cls in MEASURED:
            sel = MEASURED[cls]
            how = self.pick(["latest", "latest", "aggregate"])
            if how == "latest":
                return {"latest": {"select": sel, "within": self.pick(DURATIONS)}}, cls
            fn = self.pick(["min", "max", "mean", "sum", "first", "last"])
            return {fn: {"select": sel, "window": d(window())}}, cls
        if cls == "joints":
            fn = self.pick(["latest", "max", "sum", "last"])
            if fn == "latest":
                return {
                    "latest": {"select": "joints", "within": self.pick(DURATIONS), "field": "active_joints"}
                }, cls
            return {fn: {"select": "joints", "window": d(window()), "field": "active_joints"}}, cls
        if cls == "count":
            how = self.pick(["count", "count", "count_true", "episode_count"])
            if how == "count":
                sel = self.pick(
                    [
                        "fever_event",
                        "temperature_record",
                        "crp",
                        "high_crp",
                        "afebrile",
                        "rash",
                        "mas",
                        "big_dose",
                    ]
                )
                agg: dict[str, Any] = {"select": sel, "window": d(window())}
                if d(st.booleans()):
                    agg["spans"] = True  # events with an end (MAS episodes) last into the window
                return {"count": agg}, cls
            if how == "count_true" and depth > 0:
                return {"count_true": [self.bool(depth - 1) for _ in range(d(st.integers(1, 3)))]}, cls
            spec: dict[str, Any] = {"episodes": self.episodes(depth), "window": d(window())}
            if depth > 0 and d(st.booleans()):
                spec["starting_when"] = self.bool(depth - 1)
            return {"episode_count": spec}, cls
        if cls in ("dose_mg", "dose_mg_kg"):
            sel = "anakinra_mg" if cls == "dose_mg" else "anakinra_mg_kg"
            fn = self.pick(["latest", "max", "last"])
            if fn == "latest":
                return {"latest": {"select": sel, "within": self.pick(DURATIONS), "field": "dose"}}, cls
            return {fn: {"select": sel, "window": d(window()), "field": "dose"}}, cls
        if cls in ("dose_kg", "dose_day"):
            per_kg = cls == "dose_kg"
            return {
                "daily_dose": {
                    "drug": "anakinra",
                    "per_kg": per_kg,
                    "weight_within": self.pick(["7 days", "1 month"]),
                }
            }, cls
        if cls == "since":
            anchor = {self.pick(["first", "last"]): self.pick(["anakinra_start", "fever_event"])}
            return {"time_since": {**anchor, "unit": "days"}}, cls
        if cls == "ratio":
            divisor = self.pick([2, 0, {"count": {"select": "crp", "window": "7 days"}}])
            return {self.pick(["div", "mul"]): [self.num(max(depth - 1, 0), "count")[0], divisor]}, cls
        # pct
        value = {"latest": {"select": "crp", "within": self.pick(DURATIONS)}}
        baseline = self.pick(
            [
                {"at_anchor": self.anchored({"latest": {"select": "crp", "within": self.pick(DURATIONS)}})},
                {"latest": {"select": "crp", "within": "1 month"}},
                {"min": {"select": "crp", "window": "30 days"}},
            ]
        )
        return {"pct_change": {"value": value, "baseline": baseline}}, cls

    def anchored(self, expr: Any) -> dict[str, Any]:
        spec = {"expr": expr, "anchor": {self.pick(["first", "last"]): "anakinra_start"}}
        offset = self.pick([None, "0 days", "7 days", "-1 days", "1 month"])
        if offset is not None:
            spec["offset"] = offset
        if self.draw(st.booleans()):
            spec["whole_day"] = True
        return spec

    def episodes(self, depth: int) -> dict[str, Any]:
        gap = self.pick(["0 days", "3 days", "14 days", "12 hours"])
        if depth > 0 and self.draw(st.integers(0, 2)) == 0:
            return {"when": self.bool(depth - 1), "merge_gap": gap}
        return {"select": "mas", "merge_gap": gap}

    def bool(self, depth: int) -> Any:
        d = self.draw
        refs = [r for r, c in self.earlier.items() if c == "bool"]
        if refs and d(st.integers(0, 4)) == 0:
            return {"rule": self.pick(refs)}
        if depth > 0 and d(st.integers(0, 2)) > 0:
            op = self.pick(
                [
                    "all",
                    "any",
                    "not",
                    "at_least",
                    "held_for",
                    "unknown_unless",
                    "at_anchor",
                    "coalesce",
                    "eq",
                    "in_episode",
                ]
            )
            if op in ("all", "any"):
                return {op: [self.bool(depth - 1) for _ in range(d(st.integers(1, 3)))]}
            if op == "not":
                return {"not": self.bool(depth - 1)}
            if op == "at_least":
                items = [self.bool(depth - 1) for _ in range(d(st.integers(1, 4)))]
                return {"at_least": {"n": d(st.integers(1, len(items))), "of": items}}
            if op == "held_for":
                return {
                    "held_for": {
                        "expr": self.bool(depth - 1),
                        "duration": self.pick(["12 hours", "1 day", "2 days", "7 days", "1 month"]),
                    }
                }
            if op == "unknown_unless":
                return {
                    "unknown_unless": {
                        "value": self.bool(depth - 1),
                        "condition": self.bool(depth - 1),
                        "reason": "not enough data",
                    }
                }
            if op == "at_anchor":
                return {"at_anchor": self.anchored(self.bool(depth - 1))}
            if op == "coalesce":
                return {"coalesce": [self.bool(depth - 1), self.bool(depth - 1)]}
            if op == "eq":
                return {self.pick(["eq", "ne"]): [self.bool(depth - 1), self.bool(depth - 1)]}
            return {"in_episode": self.episodes(depth)}
        leaf = self.pick(
            [
                "compare",
                "compare",
                "compare",
                "compare2",
                "counts",
                "exists",
                "exists",
                "finding_present",
                "normal",
                "on_drug",
                "in_episode",
                "const",
            ]
        )
        if leaf == "compare":
            value, cls = self.num(depth)
            return {self.pick(["gt", "ge", "lt", "le", "eq", "ne"]): [value, self.pick(THRESHOLDS[cls])]}
        if leaf == "counts":
            # two counts of days in one unit (the ACR Pedi rules' "measured after the index
            # date"): a step, though each count grows (compiler.counts_compared)
            unit = self.pick(["days", "months"])
            since = [
                {
                    "time_since": {
                        self.pick(["first", "last"]): self.pick(["anakinra_start", "fever_event"]),
                        "unit": unit,
                    }
                }
                for _ in range(2)
            ]
            return {self.pick(["gt", "ge", "lt", "le", "eq", "ne"]): since}
        if leaf == "compare2":
            cls = self.pick(["crp", "temperature", "count"])
            return {self.pick(["gt", "ge", "le", "eq"]): [self.num(depth, cls)[0], self.num(depth, cls)[0]]}
        if leaf == "exists":
            sel = self.pick(
                ["fever_event", "temperature_record", "afebrile", "rash", "high_crp", "mas", "anakinra_event"]
            )
            spec = {"select": sel, "window": d(window())}
            if d(st.booleans()):
                spec["spans"] = True
            return {"exists": spec}
        if leaf == "finding_present":
            sel = self.pick(["fever_or_rash", "rash", "mas"])
            return {"finding_present": {"select": sel, "within": self.pick(DURATIONS)}}
        if leaf == "normal":
            spec: dict[str, Any] = {"select": "crp", "within": self.pick(DURATIONS)}
            if d(st.booleans()):
                spec["upper"] = self.pick(THRESHOLDS["crp"])
            if d(st.booleans()):
                spec["lower"] = self.pick(["1 mg/L", "0.6 mg/dL"])
            return {"normal": spec}
        if leaf == "on_drug":
            drugs = self.pick(["anakinra", ["anakinra", "canakinumab"]])
            if self.draw(st.booleans()):
                return {"on_drug": {"drugs": drugs, "except_routes": ["topical"]}}
            return {"on_drug": drugs}
        if leaf == "in_episode":
            return {"in_episode": self.episodes(0)}
        return self.pick([True, False, {"param": "flag"}])


@dataclass
class Rules:
    ids: list[str]
    files: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    units: dict[str, str] = field(default_factory=dict)  # rule → its declared unit


# a number rule of these classes may declare a unit other than the one it is computed in
DECLARED_UNITS = {"crp": "mg/dL", "temperature": "[degF]", "dose_mg": "g"}


@st.composite
def rule_sets(draw: st.DrawFn) -> Rules:
    earlier: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    units: dict[str, str] = {}
    for i in range(draw(st.integers(2, 5))):
        rid = f"r{i}"
        g = Grammar(draw, earlier)
        if draw(st.integers(0, 2)) == 0:
            define, cls = g.num(draw(st.integers(0, 2)))
        else:
            define, cls = g.bool(draw(st.integers(1, 3))), "bool"
        files[rid] = define
        earlier[rid] = cls
        if cls in DECLARED_UNITS and draw(st.integers(0, 2)) == 0:
            units[rid] = DECLARED_UNITS[cls]
    params: dict[str, dict[str, Any]] = {}
    if draw(st.booleans()):
        rid = draw(st.sampled_from(sorted(files)))
        read: set[str] = set()
        _read_by(files[rid], set(), read)
        options = [
            (name, value)
            for name, value in [
                ("fever", "100.2 [degF]"),
                ("crp_upper", "0.5 mg/dL"),
                ("validity", "2 days"),
                ("flag", False),
            ]
            if name in read  # a site value for a parameter the rule reads (it declares no other)
        ]
        if options:
            name, value = draw(st.sampled_from(options))
            params[rid] = {name: value}
    return Rules(list(files), files, params, units)


def _read_by(data: Any, names: set[str], params: set[str]) -> None:
    """The named selectors (``names``) and parameters (``params``) a definition reads, through
    the selectors it names: a rule declares only those (one it never reads is refused)."""
    if isinstance(data, dict):
        if set(data) == {"param"}:
            params.add(str(data["param"]))
        for value in data.values():
            _read_by(value, names, params)
    elif isinstance(data, list):
        for value in data:
            _read_by(value, names, params)
    elif isinstance(data, str) and data in SELECTORS and data not in names:
        names.add(data)
        _read_by(SELECTORS[data], names, params)


def load(directory: Path, rules: Rules) -> RuleSet:
    for rid, define in rules.files.items():
        unit = {"unit": rules.units[rid]} if rid in rules.units else {}
        names: set[str] = set()
        read: set[str] = set()
        _read_by(define, names, read)
        extra: dict[str, Any] = {}
        if read:
            extra["params"] = {k: v for k, v in PARAMS.items() if k in read}
        if names:
            extra["events"] = {k: v for k, v in SELECTORS.items() if k in names}
        write_rule(directory, rid, define, **extra, **unit)
    return load_rules([directory], params=rules.params)


# ---- query instants ----------------------------------------------------------------------------

# every window, validity and persistence length the grammar uses, both ways
SHIFTS = [
    timedelta(hours=h) * sign
    for h in (0, 12, 24, 36, 48, 72, 7 * 24, 14 * 24, 30 * 24)
    for sign in ((1, -1) if h else (1,))
]


def every_point(tl: Timeline) -> list[tuple[str, datetime]]:
    """Each patient of the timeline with each instant near their events (:func:`instants`)."""
    points: list[tuple[str, datetime]] = []
    for p in tl.patients:
        rows = [r for b in tl.batches for r in b if r["patient_id"] == p]
        points += [(p, q) for q in instants(rows)]
    return points


def maybe_before_the_correction(data: st.DataObject, store: Store, tl: Timeline) -> datetime | None:
    """The moment of the last ingest, before the timeline's corrections, when it has some and
    hypothesis draws it; else None (the record as it stands now)."""
    if tl.corrections and data.draw(st.booleans(), label="before the correction"):
        row = store.con.execute("SELECT max(recorded_at) FROM batches WHERE op = 'ingest'").fetchone()
        assert row is not None
        return cast(datetime, row[0])
    return None


def instants(rows: list[dict[str, Any]]) -> list[datetime]:
    """End-of-day instants near the events, and exact instants at event times and window edges
    (evaluating at all of them costs little: the engine answers every point in one query)."""
    times = sorted(
        {datetime.fromisoformat(r[k]) for r in rows for k in ("occurred_at", "ended_at") if r.get(k)}
    )
    days: set[datetime] = {end_of_day(date(2009, 2, 28)), end_of_day(date(2009, 3, 1))}
    exact: set[datetime] = set()
    for t in times:
        days.update(
            end_of_day(t.date() + timedelta(days=k)) for k in (-1, 0, 1, 2, 3, 6, 7, 8, 14, 15, 29, 30, 31)
        )
        for k in SHIFTS:
            exact.update({t + k, t + k + EPS, t + k - EPS})
        exact.update({add_months(t, 1), add_months(t, -1), add_months(t, 1) + EPS})
    return sorted(days | exact)


def values(points: list[tuple[str, datetime]]) -> str:
    """The points as a SQL relation (much faster than inserting them one by one)."""
    rows = ", ".join(f"('{p}', TIMESTAMP '{q.isoformat(sep=' ')}')" for p, q in points)
    return f"SELECT * FROM (VALUES {rows}) v(patient_id, q)"


# ---- properties ------------------------------------------------------------------------------


def every_node(
    session: Session, ruleset: RuleSet, rule_ids: list[str], points_sql: str, evidence: bool = True
) -> list[tuple[Any, ...]]:
    """(node, patient, q, value, why, evidence, note, censored) of every node of the rules at every
    point: the compiler's per-node relations, so a wrong inner value is caught even when the root
    hides it. ``censored``: a censored value's (qualifier, bound) where the node keeps one
    (``Compiler.carries``: a latest, first, last, min or max of a lab's values, and a rule
    reference, at_anchor or coalesce passing one on), else (None, None)."""
    nodes = {n.nid: n for rid in rule_ids for n in walk(ruleset.rules[rid].define) if isinstance(n, ast.Node)}
    session.con.execute(f"CREATE OR REPLACE TEMP TABLE tl_nodes AS {points_sql}")
    comp = Compiler(ruleset, session.store.current_sql(session.high_water, columns=session.columns), evidence)
    comp.add("pts", "SELECT DISTINCT patient_id, q FROM tl_nodes")
    parts = [
        f"SELECT {nid} AS nid, patient_id, q, b, x, why, list_distinct(ev), note, "
        f"{'cq, cx' if comp.carries(node) else 'NULL::VARCHAR, NULL::DOUBLE'} FROM {comp.node(node, 'pts')}"
        for nid, node in nodes.items()
    ]
    rows = session.con.execute(f"{comp.out.with_sql()}\n{' UNION ALL '.join(parts)}").fetchall()
    out = []
    for nid, patient, q, b, x, why, ev, detail, cq, cx in rows:
        node = nodes[nid]
        value = b if ruleset.types[nid].kind == "bool" else x
        out.append((node, patient, q, value, why if value is None else None, ev or [], detail, (cq, cx)))
    return out


def censored_disagreement(kept: tuple[str | None, float | None], want: Val) -> str | None:
    """How a node's censored value (qualifier, bound) in the engine differs from the reference's."""
    cq, cx = kept
    if cq != want.qualifier or (cx is None) != (want.bound is None):
        return f"censored value: engine {cq}{cx}, reference {want.qualifier}{want.bound}"
    if cx is not None and want.bound is not None and not same_number(cx, want.bound):
        return f"bound: engine {cx!r}, reference {want.bound!r}"
    return None


def tree_nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out = [tree]
    for child in [tree["derivation"]] if "derivation" in tree else tree.get("children", []):
        out += tree_nodes(child)
    return out


def explained_children(ref: Reference, node: ast.Node) -> list[ast.Node]:
    """The sub-nodes an explanation shows at the same moment (a literal threshold is not one)."""
    numeric = isinstance(node, ast.Compare) and ref.type(node.left).kind == "num"
    if isinstance(node, ast.Compare) and numeric and isinstance(node.right, ast.Const | ast.Param):
        return [node.left]
    if isinstance(node, ast.EpisodeCount | ast.Normal):
        return []  # starting_when is evaluated at each episode's start; limits are literals
    return ast.children(node)


def assert_explanation(ref: Reference, node: ast.Node, tree: dict[str, Any], q: datetime) -> None:
    """Every clause of an explanation has the reference's value, reason, events and detail."""
    value = None if tree["value"] == "unknown" else tree["value"]
    got = Result(
        node.path, "", "", q, "", value, None, tree.get("reason"), tree.get("events", []), tree.get("detail")
    )
    problem = disagreement(got, ref.evaluate(node, q))
    assert problem is None, f"explanation of {node.path} ({type(node).__name__}) at {q}: {problem}"
    kids = tree.get("children", [])
    if isinstance(node, ast.RuleRef):
        (rule,) = kids
        assert_explanation(ref, ref.rules.rules[node.rule].define, rule["derivation"], q)
    elif isinstance(node, ast.AtAnchor):
        a = ref.anchor(node.anchor, q)
        if kids:
            assert a is not None
            assert_explanation(ref, node.expr, kids[0], ref.anchored_at(node, a["occurred_at"]))
    elif isinstance(node, ast.HeldFor):
        for check in tree["checked"]:
            at = datetime.fromisoformat(check["at"])
            want = ref.evaluate(node.expr, at)
            assert (check["value"], check["reason"]) == (
                "unknown" if want.value is None else want.value,
                want.why,
            )
        if kids:
            assert_explanation(ref, node.expr, kids[0], datetime.fromisoformat(tree["decided_at"]))
    else:
        subs = explained_children(ref, node)
        assert len(subs) == len(kids), f"{node.path}: {len(kids)} clauses shown for {len(subs)}"
        for sub, kid in zip(subs, kids, strict=True):
            assert_explanation(ref, sub, kid, q)


@PROPERTY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_engine_agrees_with_the_reference_evaluator(data: st.DataObject, tl: Timeline, rules: Rules) -> None:
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            as_known_at = maybe_before_the_correction(data, store, tl)
            session = Session(store, ruleset, as_known_at)
            points = every_point(tl)
            refs = {p: Reference(ruleset, store.events(p, as_known_at=as_known_at)) for p in tl.patients}
            results = session.evaluate(None, rules.ids, points_sql=values(points))
            assert len(results) == len(points) * len(rules.ids)
            for got in results:
                problem = disagreement(got, refs[got.patient_id].rule(got.rule_id, got.q))
                assert problem is None, f"{got.rule_id} for {got.patient_id} at {got.q}: {problem}"
            for node, patient, q, value, why, ev, detail, kept in every_node(
                session, ruleset, rules.ids, values(points)
            ):
                got = Result(node.path, patient, "", q, "", value, None, why, ev, detail)
                want = refs[patient].evaluate(node, q)
                problem = disagreement(got, want) or censored_disagreement(kept, want)
                assert problem is None, f"{node.path} ({type(node).__name__}) for {patient} at {q}: {problem}"
            patient, q = data.draw(st.sampled_from(points), label="explained point")
            rid = data.draw(st.sampled_from(rules.ids), label="explained rule")
            explanation = session.explain(patient, rid, q.isoformat())
            assert_explanation(refs[patient], ruleset.rules[rid].define, explanation["tree"]["derivation"], q)
            # the events used are the answer's evidence, what the clauses read besides are apart
            used = {e["seq"] for e in explanation["events"]}
            assert used == set(refs[patient].rule(rid, q).ev)
            read = used | {e["seq"] for e in explanation["other_events"]}
            assert read >= set().union(*(set(n.get("events", [])) for n in tree_nodes(explanation["tree"])))


@PROPERTY
@given(tl=timelines(), rules=rule_sets())
def test_engine_without_evidence_has_the_reference_values_and_reasons(tl: Timeline, rules: Rules) -> None:
    """Cohort runs and histories compile for values only (combinators as joins, no evidence or
    notes): every node must still give the reference's value and reason."""
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            points = every_point(tl)
            refs = {p: Reference(ruleset, store.events(p)) for p in tl.patients}
            results = session.evaluate(None, rules.ids, points_sql=values(points), evidence=False)
            assert len(results) == len(points) * len(rules.ids)
            for got in results:
                problem = disagreement(got, refs[got.patient_id].rule(got.rule_id, got.q), evidence=False)
                assert problem is None, f"{got.rule_id} for {got.patient_id} at {got.q}: {problem}"
            for node, patient, q, value, why, _, _, kept in every_node(
                session, ruleset, rules.ids, values(points), evidence=False
            ):
                got = Result(node.path, patient, "", q, "", value, None, why, [])
                want = refs[patient].evaluate(node, q)
                problem = disagreement(got, want, evidence=False) or censored_disagreement(kept, want)
                assert problem is None, f"{node.path} ({type(node).__name__}) for {patient} at {q}: {problem}"


# ---- min_of / max_of over censored values ------------------------------------------------------


@st.composite
def crp_timelines(draw: st.DrawFn) -> Timeline:
    """One patient's CRPs, half of them censored, a few days apart: the values a ``min_of`` /
    ``max_of`` reads are often known at once, censored and exact, equal at their bounds."""
    rows = []
    for i in range(draw(st.integers(2, 8))):
        value, unit = draw(st.sampled_from(CRP))
        qualifier = draw(st.sampled_from([None, None, "<", "<=", ">", ">="]))
        day = draw(st.sampled_from([*HOT_DAYS, 10, 20, 30]))
        rows.append({
            "patient_id": "P1", "occurred_at": when(day, draw(st.sampled_from(CLOCK))), "event_id": f"e{i}",
            "kind": "lab", "code": "1988-5", "unit": unit,
            "value": value if qualifier is None else f"{qualifier}{value}",
        })  # fmt: skip
    return Timeline([rows], [], ["P1"])


@st.composite
def extreme_rules(draw: st.DrawFn) -> Rules:
    """``r0``: a ``min_of`` or ``max_of`` of CRPs (latest, first, last, min, max, mean of a
    window) and constants, maybe nested, maybe declared in mg/dL; ``r1`` compares it with a
    threshold at and around the CRPs' values."""

    def operand(depth: int) -> Any:
        how = draw(
            st.sampled_from(["latest", "latest", "window", "constant", "nested" if depth else "latest"])
        )
        if how == "latest":
            return {"latest": {"select": "crp", "within": draw(st.sampled_from(DURATIONS))}}
        if how == "window":
            fn = draw(st.sampled_from(["first", "last", "min", "max", "mean"]))
            return {fn: {"select": "crp", "window": draw(window())}}
        if how == "constant":
            return draw(st.sampled_from(["6 mg/L", "0.6 mg/dL", "5.9 mg/L", "12 mg/L", "0 mg/L"]))
        return extreme(depth - 1)

    def extreme(depth: int) -> Any:
        fn = draw(st.sampled_from(["min_of", "max_of"]))
        items = [operand(depth) for _ in range(draw(st.integers(2, 3)))]
        if all(isinstance(i, str) for i in items):  # constants only: folded, no CRP read
            items[0] = {"latest": {"select": "crp", "within": "30 days"}}
        return {fn: items}

    op = draw(st.sampled_from(["lt", "le", "gt", "ge", "eq"]))
    threshold = draw(st.sampled_from(["6 mg/L", "0.6 mg/dL", "5.9 mg/L", "6.1 mg/L", "12 mg/L", "0 mg/L"]))
    units = {"r0": "mg/dL"} if draw(st.booleans()) else {}
    files = {"r0": extreme(1), "r1": {op: [{"rule": "r0"}, threshold]}}
    return Rules(["r0", "r1"], files, {}, units)


@PROPERTY
@given(tl=crp_timelines(), rules=extreme_rules())
def test_min_of_and_max_of_over_censored_values_agree_with_the_reference(tl: Timeline, rules: Rules) -> None:
    """min_of / max_of over censored operands (the extreme of their ranges) give the
    reference's value, qualifier and bound, reason and note at every node, in both engines."""
    note(f"rules: {rules.files} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            points = [("P1", q) for q in instants(tl.batches[0])]
            ref = Reference(ruleset, store.events("P1"))
            for got in session.evaluate(None, rules.ids, points_sql=values(points)):
                problem = disagreement(got, ref.rule(got.rule_id, got.q))
                assert problem is None, f"{got.rule_id} at {got.q}: {problem}"
            for node, patient, q, value, why, ev, detail, kept in every_node(
                session, ruleset, rules.ids, values(points)
            ):
                got = Result(node.path, patient, "", q, "", value, None, why, ev, detail)
                want = ref.evaluate(node, q)
                problem = disagreement(got, want) or censored_disagreement(kept, want)
                assert problem is None, f"{node.path} ({type(node).__name__}) at {q}: {problem}"


@PROPERTY
@given(tl=timelines(), rules=rule_sets())
def test_the_states_table_has_the_values_reasons_and_qualifiers_of_evaluate(
    tl: Timeline, rules: Rules
) -> None:
    """Session.states (a cohort run's table, left in DuckDB) gives every rule at every point as
    Session.evaluate does: the value (a censored one as its bound, with its qualifier beside),
    and the reason of an unknown one."""
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            points = every_point(tl)
            results = session.evaluate(None, rules.ids, points_sql=values(points), evidence=False)
            want = {(r.rule_id, r.patient_id, r.q): (r.value, r.qualifier, r.why) for r in results}
            assert session.states(values(points), rules.ids) == len(want)
            kinds = {rid: ruleset.rules[rid].type.kind for rid in rules.ids}
            table = session.con.execute(
                "SELECT rule_id, patient_id, q, b, x, qualifier, why FROM tl_states"
            ).fetchall()
            got = {
                (rid, p, q): (b if kinds[rid] == "bool" else x, qualifier, why)
                for rid, p, q, b, x, qualifier, why in table
            }
            assert got.keys() == want.keys()
            for key, (value, qualifier, why) in got.items():
                w = want[key]
                assert (qualifier, why) == w[1:] and _same_value(value, w[0]), (
                    f"{key}: states {value, qualifier, why}, evaluate {w}"
                )


@HISTORY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_history_intervals_agree_with_the_state_at_every_day_end_and_every_edge(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            patient = data.draw(st.sampled_from(tl.patients), label="patient")
            intervals = session.history(patient, rules.ids)
            if not intervals:
                return
            start = min(i["start"] for i in intervals)
            end = max(i["end"] for i in intervals)  # exclusive: the midnight after the last day
            days = (end - timedelta(microseconds=1)).date() - start.date()
            moments = {end_of_day(start.date() + timedelta(days=k)) for k in range(days.days + 1)}
            rows = [r for b in tl.batches for r in b if r["patient_id"] == patient]
            moments |= {q for q in instants(rows) if start <= q < end}
            states = session.evaluate(
                None, rules.ids, points_sql=values([(patient, q) for q in sorted(moments)])
            )
            # a number that reads age or time since an event changes at every midnight; its
            # history holds the value of each interval's start (README, "History")
            compiler = Compiler(ruleset, "SELECT 1")
            continuous = {
                rid
                for rid in rules.ids
                if ruleset.rules[rid].type.kind == "num" and not compiler.stepwise(rid)
            }
            for got in states:
                if got.rule_id in continuous:
                    continue
                lane = [i for i in intervals if i["rule"] == got.rule_id]
                covering = [i for i in lane if i["start"] <= got.q < i["end"]]
                assert len(covering) == 1, f"{got.rule_id} at {got.q}: {len(covering)} intervals cover it"
                interval = covering[0]
                want = "unknown" if got.value is None else got.value
                assert (interval["value"], interval["qualifier"]) == (want, got.qualifier), (
                    f"{got.rule_id} at {got.q}: history {interval}, state {want} {got.qualifier}"
                )
                assert interval["reason"] == got.why, (
                    f"{got.rule_id} at {got.q}: history {interval}, state {got.why}"
                )


@PROPERTY
@given(tl=noted_ties(), rules=rule_sets())
def test_correcting_only_notes_changes_no_state_of_either_evaluator(tl: Timeline, rules: Rules) -> None:
    """A correction is the same event: one that changes only a note (no rule reads it) changes
    no value, reason or note of any rule at any instant, as known before it and after, though
    the event shares its instant with others; the evidence names the same events (by their
    current versions)."""
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            found = store.con.execute("SELECT max(recorded_at) FROM batches WHERE op = 'ingest'").fetchone()
            assert found is not None
            before = found[0]  # the corrections are the batches after it
            event_of = dict(store.con.execute("SELECT seq, event_id FROM events").fetchall())
            points = every_point(tl)

            def shown(value: Any, why: str | None, ev: Sequence[int], detail: str | None) -> tuple[Any, ...]:
                return value, why, sorted(event_of[s] for s in ev), detail

            then, now = (
                Session(store, ruleset, known).evaluate(None, rules.ids, points_sql=values(points))
                for known in (before, None)
            )
            for a, b in zip(then, now, strict=True):
                assert (a.rule_id, a.patient_id, a.q) == (b.rule_id, b.patient_id, b.q)
                assert shown(a.value, a.why, a.evidence, a.note) == shown(
                    b.value, b.why, b.evidence, b.note
                ), f"{a.rule_id} for {a.patient_id} at {a.q}"
            for p in tl.patients:
                old, new = (
                    Reference(ruleset, store.events(p, as_known_at=known)) for known in (before, None)
                )
                for rid in rules.ids:
                    for q in {q for pid, q in points if pid == p}:
                        a, b = old.rule(rid, q), new.rule(rid, q)
                        assert shown(a.value, a.why, a.ev, a.note) == shown(b.value, b.why, b.ev, b.note), (
                            f"replay: {rid} for {p} at {q}"
                        )


# Found by CI: a rule held for 12 hours, read by another rule, was evaluated at the reader's
# STEP_ORIGIN and looked back before the inner rule's own STEP_ORIGIN, where the as-of lookup
# found nothing: unknown, without a reason, for the whole history.
_BEFORE_STEP_ORIGIN = (
    Timeline(
        batches=[
            [{"patient_id": "P1", "occurred_at": "2009-02-24T08:00", "kind": "finding", "code": "rash", "event_id": "e0"}],
            [{"patient_id": "P1", "occurred_at": "2009-02-05T00:00", "kind": "lab", "code": "2276-4", "value": 684, "unit": "ng/mL", "event_id": "e1"}],
        ],
        corrections=[],
        patients=["P1"],
    ),
    Rules(
        ids=["r1", "r2", "r3"],
        files={
            "r1": {"in_episode": {"select": "mas", "merge_gap": "0 days"}},
            "r2": {"held_for": {"expr": {"rule": "r1"}, "duration": "12 hours"}},
            "r3": {"rule": "r2"},
        },
        params={},
        units={},
    ),
)  # fmt: skip


@HISTORY
@given(tl=timelines(), rules=rule_sets())
@example(tl=_BEFORE_STEP_ORIGIN[0], rules=_BEFORE_STEP_ORIGIN[1])
def test_every_patients_history_at_once_equals_each_patients_history(tl: Timeline, rules: Rules) -> None:
    """Session.histories reads a rule that other rules use from its values at its own change
    points (an as-of lookup) instead of evaluating it again at theirs: the intervals must be
    those of each patient's own history, which evaluates every rule's whole tree."""
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            session.histories(rules.ids)
            rows = session.con.execute(
                'SELECT rule_id, patient_id, start, "end", b, x, why, qualifier FROM tl_history'
            ).fetchall()
            kinds = {rid: ruleset.rules[rid].type.kind for rid in rules.ids}
            for patient in tl.patients:
                want = [
                    (
                        i["rule"],
                        i["start"],
                        i["end"],
                        None if i["value"] == "unknown" else i["value"],
                        i["reason"],
                        i["qualifier"],
                    )
                    for i in session.history(patient, rules.ids)
                ]
                got = [
                    (rid, start, end, b if kinds[rid] == "bool" else x, why, qualifier)
                    for rid, p, start, end, b, x, why, qualifier in rows
                    if p == patient
                ]
                # one interval per rule and start; a number to the engine's precision (a mean
                # computed over a batch of patients and over one may differ in its last bit)
                got, want = sorted(got, key=lambda r: r[:2]), sorted(want, key=lambda r: r[:2])
                assert [(*g[:3], *g[4:]) for g in got] == [(*w[:3], *w[4:]) for w in want], patient
                assert all(_same_value(g[3], w[3]) for g, w in zip(got, want, strict=True)), (
                    patient,
                    got,
                    want,
                )


def _same_value(a: object, b: object) -> bool:
    """Equal values: booleans and unknowns exactly, numbers to the engine's precision."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    return same_number(float(a), float(b))  # type: ignore[arg-type]


def replays(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> Iterator[tuple[RuleSet, Reference, Reference, list[datetime]]]:
    """For each patient of a generated store: the rules, the replay and the naive replay of
    the patient's events, and the instants of its rows in an order drawn."""
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            for p in tl.patients:
                events = store.events(p)
                rows = [r for b in tl.batches for r in b if r["patient_id"] == p]
                moments = data.draw(st.permutations(instants(rows)), label="instants")
                yield ruleset, Reference(ruleset, events), Reference(ruleset, events, naive=True), moments


@PROPERTY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_the_replay_gives_at_every_instant_what_the_naive_replay_computes(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    """The replay takes a node's value from an earlier instant where what it depends on is the
    same (an operand's value, a leaf's events): every rule and every node, at every instant in
    an order drawn, must have the value, reason, evidence and note that the naive replay, which
    computes each from the raw events, gives — true not 1.0, -0.0 not 0.0."""
    for _, fast, naive, moments in replays(data, tl, rules):
        for q in moments:
            for rid in rules.ids:
                got, want = fast.rule(rid, q), naive.rule(rid, q)
                assert got == want and repr(got.value) == repr(want.value), f"{rid} at {q}"
        for key, want in naive.memo.items():
            got = fast.memo.get(key)
            if got is not None:  # every node both evaluated there
                assert got == want and repr(got.value) == repr(want.value), f"node {key[0]} at {key[1]}"


@PROPERTY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_the_replay_without_evidence_gives_every_value_reason_and_note_of_the_replay(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    """`timeline state` written as a table replays without evidence (Reference.evidence False:
    a held_for stops at the first moment its expression is false at): every rule, at every
    instant in an order drawn, must have the value (true not 1.0, -0.0 not 0.0), reason, note,
    qualifier and bound the replay with evidence gives; only the evidence may be less."""
    for ruleset, fast, _, moments in replays(data, tl, rules):
        lean = Reference(ruleset, fast.events, evidence=False)
        for q in moments:
            for rid in rules.ids:
                got, want = lean.rule(rid, q), fast.rule(rid, q)
                assert got._replace(ev=()) == want._replace(ev=()), f"{rid} at {q}"
                assert repr(got.value) == repr(want.value), f"{rid} at {q}"
                assert set(got.ev) <= set(want.ev), f"{rid} at {q}"


@PROPERTY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_every_node_asked_at_any_instant_has_the_value_the_naive_replay_computes(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    """The replay gives a steady node (Reference.steady) the value of its last evaluation at an
    instant between the same two of its instants of change (those its held_for or episodes
    found), without looking at its operands: every node of every rule, asked itself at every
    instant in an order drawn, after the rules there, must have the value, reason, evidence
    and note the naive replay computes."""
    for ruleset, fast, naive, moments in replays(data, tl, rules):
        nodes = [n for rid in rules.ids for n in walk(ruleset.rules[rid].define) if isinstance(n, ast.Node)]
        for q in moments:
            for rid in rules.ids:
                fast.rule(rid, q)
            for node in nodes:
                got, want = fast.evaluate(node, q), naive.evaluate(node, q)
                assert got == want and repr(got.value) == repr(want.value), f"node {node.nid} at {q}"


@PROPERTY
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_the_episode_found_from_the_date_is_the_one_the_whole_record_gives(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    """Reference.episodes_at finds a condition's episode around an instant from that instant
    outwards: at every instant, in an order drawn, after the rules there, it must give the raw
    episodes containing it — start, end, evidence and evidence by moment — that the naive
    replay finds from the start of the record."""
    for ruleset, fast, naive, moments in replays(data, tl, rules):
        specs = [
            n.episodes
            for rid in rules.ids
            for n in walk(ruleset.rules[rid].define)
            if isinstance(n, ast.InEpisode | ast.EpisodeCount)
        ]
        for q in moments:
            for rid in rules.ids:
                fast.rule(rid, q)
            for spec in specs:
                want = [ep for ep in naive.episodes(spec, False, q) if ep.s <= q <= ep.e]
                assert fast.episodes_at(spec, q) == want, f"{spec} at {q}"
