"""A per-patient replay of the rule language in plain Python: the second evaluator.

It replays the current events of ONE patient (dicts as returned by ``Store.events``, with
``seq`` and ``asserted_seq``) and
evaluates a rule's tree at an instant ``q`` node by node, written from the README ("What
--at means", "The language"), not from the compiler's SQL. Two uses:

- ``timeline state`` for one patient: a few hundred events, where the SQL engine's fixed cost
  (parsing, binding and running ~400 relations: ~0.6 s for the sJIA pack) dwarfs the work.
  With its events indexed per selector the replay takes ~0.06 s for the 10k cohort's
  patient with most events.
- the tests' oracle: the property tests check the SQL engine against it node by node (value,
  reason, evidence and note), and the benchmark's "naive replay" runs it with ``naive=True``.

Each node at each instant is computed from the patient's events (with ``naive=True`` from the
raw list, without indexes). Only ``held_for`` and condition episodes need the value of a
subtree over a stretch of time; they evaluate it at a generous superset of the instants where it can change (:meth:`Reference.candidates`) — every event
time shifted by the durations the subtree uses, with a microsecond either side and, for
calendar months and years, every day near a month end; and the midnights around the days a
comparison of ``age`` or ``time_since`` with a constant flips (:mod:`timeline.engine.crossings`,
which the compiler uses too). A condition's episodes are found from ``ORIGIN``, before every
candidate.

``evaluate`` returns :class:`Val` ``(value, why, ev, note)``: ``value`` is a bool or float, or
None for unknown; ``why`` is the reason (the engine's wording), ``ev`` the sequence numbers of
the event versions used and ``note`` the short account of the node the engine shows as a
state's detail (its ``note`` column). The evidence contract (what the engine must report):

- ``latest`` / ``normal``: the latest matching event, also when it is too old (the reason
  names its date); ``daily_dose``: the latest dose event and, when the dose needs it, the
  latest weight; ``on_drug``: the latest start/change/stop of each drug.
- aggregates and ``episode_count``: every event (episode) counted in the window, plus the
  anchor event of an anchored window.
- ``all``: the false items when false, else every item; ``any``: the true items when true,
  else every item; ``at_least``: the true items when true, the false items when false, else
  every item; ``count_true``: the true items; ``coalesce``: the item whose value was taken.
- ``unknown_unless``: the value's evidence, plus the condition's (what made the value known,
  or left it unknown).
- ``at_anchor``: the anchor event, plus the subtree's evidence when the anchored moment is
  at or before ``q`` (never events from after ``q``).
- ``held_for``: everything used at every moment checked.
- ``in_episode``: the events of the episode containing ``q``; of a condition's episode, the
  condition's evidence at the moments from the episode's start up to ``q`` (never after).
- comparisons, arithmetic, ``not``, ``clip``, ``pct_change``, rule references: the union of
  their operands'.

``in_episode`` tests the raw intervals (no look-ahead: bridging a gap needs the next episode,
which lies after ``q``); ``episode_count`` counts episodes merged across gaps ≤ merge_gap.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from timeline.engine.compiler import DOSE_DECIMALS
from timeline.engine.crossings import BIRTH, Crossing, anchor_of, crossings
from timeline.language import ast
from timeline.language.durations import Duration, add_months, shift
from timeline.language.loader import RuleSet, field_unit
from timeline.units import conversion, converter, display_unit

EPS = timedelta(microseconds=1)
FAR = datetime(9999, 12, 31)
# Before every change point (events start in 1900; no duration is longer than 200 years): a
# condition's episodes are found from its value here on, so one that holds before anything
# happens (a constant, "no fever yet") has an episode from the start of the record.
ORIGIN = datetime(1000, 1, 1)
ON_KINDS = ("medication_start", "medication_dose_change")

CMP: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}
WEIGHT = ast.Selector.construct(name="weight", kinds=("weight",))  # unchecked (see ast.BOOL)

Event = dict[str, Any]


@dataclass(frozen=True)
class Val:
    value: bool | float | None
    why: str | None = None
    ev: tuple[int, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Episode:
    s: datetime
    e: datetime  # inclusive end; FAR while open
    ev: tuple[int, ...]
    # a condition's episode: its evidence at each moment examined, so that ``in_episode`` at
    # q names only what was used up to q (the moments after q are the episode's future)
    evq: tuple[tuple[datetime, tuple[int, ...]], ...] = ()


# ---- time and text ----------------------------------------------------------------------------


def single_dose(e: Event) -> bool:
    """A start or dose change of ``frequency: once``: a single dose, not a course."""
    return e["kind"] in ON_KINDS and e["frequency"] == "once"


def end_of_day(d: date | str) -> datetime:
    day = date.fromisoformat(d) if isinstance(d, str) else d
    return datetime.combine(day, time()) + timedelta(days=1) - EPS


def rnd(x: float, n: int) -> float:
    """DuckDB's round(): half away from zero; infinities unchanged."""
    if not math.isfinite(x):
        return x
    f = 10.0**n
    a = abs(x) * f
    if not math.isfinite(a):  # |x| near the largest double: no digits after the point to round
        return x
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return math.copysign(r / f, x)


def fmt(v: float | None) -> str | None:
    """A number as the engine's notes write it (the ``tl_fmt`` macro): four decimals at
    most, trailing zeros dropped."""
    if v is None:
        return None
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text  # -0.0, or a negative number that rounds to 0


def day(t: datetime) -> str:
    # isoformat is strftime's %Y-%m-%d, faster, for years of four digits (strftime does not pad
    # a year before 1000)
    return t.date().isoformat() if t.year >= 1000 else f"{t:%Y-%m-%d}"


def _holds(op: str, value: bool) -> str:
    """The symbol of what holds between a comparison's two numbers (see ``ast.SHOWN``)."""
    return ast.SHOWN[op if value else ast.OPPOSITE[op]]


def _concat(whys: Iterable[str | None]) -> str | None:
    """The reasons of the parts of an operation, in order: a clause ("; "-separated) that an
    earlier part gives is not said again (a value and its baseline both unknown for want of
    the index drug's start). The compiler's ``tl_why2`` macro, folded (``Compiler.ordered_reasons``)."""
    out: list[str] = []
    seen: set[str] = set()
    for w in whys:
        if not w:
            continue
        clauses = w.split("; ")
        out += [c for c in clauses if c not in seen]
        seen.update(clauses)
    return "; ".join(out) if out else None


def _distinct(whys: Iterable[str | None]) -> str | None:
    """all / any / at_least name each distinct reason once, in sorted order."""
    parts = sorted({w for w in whys if w})
    return "; ".join(parts) if parts else None


def _clauses(whys: Iterable[str | None]) -> list[str]:
    """held_for names each clause ("; "-separated) of its moments' reasons once, sorted:
    the moments of a window repeat most of each other's clauses."""
    return sorted({c for w in whys if w for c in w.split("; ")})


def timeline_order(e: Event) -> tuple[datetime, int]:
    """Where an event stands in a patient's timeline: its instant, then (at a tie) the order
    the events were asserted in, which a correction does not change."""
    return e["occurred_at"], e["asserted_seq"]


def _flat(vals: Iterable[Val]) -> tuple[int, ...]:
    return tuple(s for v in vals for s in v.ev)


# ---- the evaluator ------------------------------------------------------------------------------


@dataclass
class Reference:
    """The rules of a :class:`RuleSet` over the current events of one patient. ``naive``:
    every lookup scans the whole event list (the benchmark's naive replay); otherwise each
    selector's events are found once and looked up by time."""

    rules: RuleSet
    events: Sequence[Event]
    naive: bool = False
    memo: dict[tuple[int, datetime], Val] = field(default_factory=dict)
    cp_memo: dict[int, list[datetime]] = field(default_factory=dict)
    ep_memo: dict[tuple[int, bool, datetime | None], list[Episode]] = field(default_factory=dict)
    sel_memo: dict[tuple[int, str | None], tuple[list[Event], list[datetime]]] = field(default_factory=dict)
    med_memo: dict[tuple[str, tuple[str, ...]], tuple[list[Event], list[datetime]]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        # events of one instant in the order they were asserted: a correction is the same
        # event and keeps its place (ordered by its own seq it would move past the others)
        self.events = sorted(self.events, key=timeline_order)
        # positions of each kind's events in that order: a selector naming its kinds looks
        # only at those (the events' order kept)
        self.kind_at: dict[str, list[int]] = {}
        # and of each (kind, code): a selector of a few codes of a kind (a lab's CRP among
        # every lab) looks at those alone
        self.code_at: dict[tuple[str, Any], list[int]] = {}
        self.drug_at: dict[str, list[int]] = {}  # a drug's events (on_drug, daily_dose)
        for i, e in enumerate(self.events):
            self.kind_at.setdefault(e["kind"], []).append(i)
            self.code_at.setdefault((e["kind"], e.get("code")), []).append(i)
            if e.get("drug") is not None:
                self.drug_at.setdefault(e["drug"], []).append(i)
        # selectors equal in value (a rule and its carried copies name the same events) share
        # their events, found once: ``sel_memo`` is keyed by the selector's id, this by its value
        self.sel_by_value: dict[tuple[ast.Selector, str | None], tuple[list[Event], list[datetime]]] = {}
        self.end_memo: dict[tuple[int, str | None], list[datetime]] = {}
        self.methods: dict[type, Callable[[Any, datetime], Val]] = {}
        self.dur_memo: dict[int, Duration] = {}
        self.thr_memo: dict[tuple[int, str | None], float | bool] = {}
        self._crossing: Callable[[ast.Compare], tuple[Crossing, ...] | None] | None = None

    # -- entry points
    def rule(self, rule_id: str, q: datetime) -> Val:
        """A rule's value, in the unit its file declares."""
        v = self.evaluate(self.rules.rules[rule_id].define, q)
        c = self.rules.reported(rule_id)
        if c is None or v.value is None:
            return v
        return Val(rnd(c.apply(float(v.value)), 9), v.why, v.ev, v.note)

    def evaluate(self, node: ast.Node, q: datetime) -> Val:
        key = (node.nid, q)
        found = self.memo.get(key)
        if found is None:
            method = self.methods.get(type(node))
            if method is None:  # the method of each node class, looked up once
                method = self.methods[type(node)] = getattr(self, "_" + type(node).__name__)
            found = self.memo[key] = method(node, q)
        return found

    # -- helpers
    def type(self, node: ast.Node) -> ast.Type:
        return self.rules.types[node.nid]

    def duration(self, ref: ast.DurationRef) -> Duration:
        key = id(ref)
        if key not in self.dur_memo:
            self.dur_memo[key] = self.rules.duration(ref)
        return self.dur_memo[key]

    def literal(self, node: ast.Node) -> tuple[float | bool, str | None] | None:
        if isinstance(node, ast.Const):
            return node.value, node.unit
        if isinstance(node, ast.Param):
            spec = self.rules.rules[node.rule].param(node.name)
            value = spec.effective
            assert not isinstance(value, Duration | str)  # the loader refuses both as values
            return value, spec.unit
        return None

    def threshold(self, node: ast.Node, target: str | None) -> float | bool:
        key = (id(node), target)
        if key not in self.thr_memo:
            self.thr_memo[key] = self._threshold(node, target)
        return self.thr_memo[key]

    def _threshold(self, node: ast.Node, target: str | None) -> float | bool:
        lit = self.literal(node)
        assert lit is not None
        value, unit = lit
        if isinstance(value, bool):
            return value
        if unit is not None and target is not None and unit != target:
            value = conversion(unit, target).apply(value)
        return rnd(float(value), 9)

    def scale(self, x: float, frm: str | None, to: str | None) -> float:
        return converter(frm, to)(x)

    def matches(self, sel: ast.Selector, e: Event) -> bool:
        if sel.kinds and e["kind"] not in sel.kinds:
            return False
        if sel.codes and e["code"] not in sel.codes:
            return False
        if sel.drugs and e["drug"] not in sel.drugs:
            return False
        if sel.not_drugs and e["drug"] in sel.not_drugs:
            return False
        if sel.dose_unit is not None and e["dose_unit"] != sel.dose_unit:
            return False
        if sel.present is not None and (True if e["present"] is None else e["present"]) != sel.present:
            return False
        for cond in sel.where:
            v = e.get(cond.field)
            if v is None:
                return False
            if not CMP[cond.op](rnd(float(v), 9), self.threshold(cond.value, field_unit(sel, cond.field))):
                return False
        return not sel.any_of or any(self.matches(s, e) for s in sel.any_of)

    @staticmethod
    def _upto(found: tuple[list[Event], list[datetime]], q: datetime | None) -> list[Event]:
        events, times = found
        return events if q is None else events[: bisect_right(times, q)]

    def selected(self, sel: ast.Selector, q: datetime | None = None, fld: str | None = None) -> list[Event]:
        """Matching events (ordered by occurred_at, asserted_seq), visible at q, with the field set."""
        if self.naive:
            return [
                e
                for e in self.events
                if self.matches(sel, e)
                and (q is None or e["occurred_at"] <= q)
                and (fld is None or e.get(fld) is not None)
            ]
        return self._upto(self.indexed(sel, fld), q)

    def indexed(self, sel: ast.Selector, fld: str | None) -> tuple[list[Event], list[datetime]]:
        """Every matching event with the field set (ordered by occurred_at, asserted_seq) and their
        times, found once per selector and field."""
        key = (id(sel), fld)
        found = self.sel_memo.get(key)
        if found is None:
            found = self.sel_by_value.get((sel, fld))
            if found is None:
                at = self.positions(sel)
                candidates = self.events if at is None else [self.events[i] for i in at]
                events = [
                    e for e in candidates if self.matches(sel, e) and (fld is None or e.get(fld) is not None)
                ]
                found = self.sel_by_value[(sel, fld)] = (events, [e["occurred_at"] for e in events])
            self.sel_memo[key] = found
        return found

    def positions(self, sel: ast.Selector) -> list[int] | None:
        """The positions (in timeline order) of a superset of the events the selector matches:
        those of its kinds (and codes), or of the selectors of its ``any_of`` when each names
        kinds; None: any event may match."""
        if sel.kinds and sel.codes:
            codes = set(sel.codes)
            return sorted(i for k in sel.kinds for c in codes for i in self.code_at.get((k, c), ()))
        if sel.kinds:
            return sorted(i for k in sel.kinds for i in self.kind_at.get(k, ()))
        if not sel.any_of:
            return None
        parts = [self.positions(s) for s in sel.any_of]
        if any(p is None for p in parts):
            return None
        return sorted({i for p in parts if p is not None for i in p})

    def between(
        self,
        sel: ast.Selector,
        q: datetime,
        fld: str | None,
        lo: datetime | None,
        hi: datetime | None,
        w: ast.Window,
        spans: bool = False,
    ) -> list[Event]:
        """The selector's events visible at q inside the window [lo, hi] (each bound in or out
        as the window says), found by bisection: ``selected`` filtered by ``in_window``.
        ``spans``: an event lasting to its end overlaps the window if it starts by ``hi`` and
        ends from ``lo`` on."""
        events, times = self.indexed(sel, fld)
        i1 = bisect_right(times, q)
        if hi is not None:
            i1 = min(i1, (bisect_right if w.end_inclusive else bisect_left)(times, hi))
        if lo is None:
            return events[:i1]
        if spans:
            ends = self.ends(sel, fld)
            if w.start_inclusive:
                return [e for e, end in zip(events[:i1], ends[:i1], strict=True) if end >= lo]
            return [e for e, end in zip(events[:i1], ends[:i1], strict=True) if end > lo]
        i0 = (bisect_left if w.start_inclusive else bisect_right)(times, lo)
        return events[i0:i1]

    def ends(self, sel: ast.Selector, fld: str | None) -> list[datetime]:
        """``span_end`` of each of ``indexed(sel, fld)``'s events."""
        key = (id(sel), fld)
        if key not in self.end_memo:
            self.end_memo[key] = [self.span_end(e) for e in self.indexed(sel, fld)[0]]
        return self.end_memo[key]

    def medications(self, drug: str, q: datetime, except_routes: tuple[str, ...] = ()) -> list[Event]:
        """The drug's starts, dose changes, stops and discontinuations up to q, not by the
        excluded routes."""
        if self.naive:
            return [
                e
                for e in self.events
                if e["kind"] in ast.MEDICATION_KINDS
                and e["drug"] == drug
                and e["occurred_at"] <= q
                and e["route"] not in except_routes
            ]
        key = (drug, except_routes)
        if key not in self.med_memo:
            found = [
                e
                for e in (self.events[i] for i in self.drug_at.get(drug, ()))
                if e["kind"] in ast.MEDICATION_KINDS and e["route"] not in except_routes
            ]
            self.med_memo[key] = (found, [e["occurred_at"] for e in found])
        return self._upto(self.med_memo[key], q)

    def latest(self, sel: ast.Selector, q: datetime, fld: str) -> Event | None:
        found = self.selected(sel, q, fld)
        return found[-1] if found else None  # the last instant; at a tie the last asserted

    def anchor(self, anchor: ast.Anchor, q: datetime) -> Event | None:
        found = self.selected(anchor.select)
        if anchor.which == "first":
            if not found:
                return None
            t0 = found[0]["occurred_at"]
            first = [e for e in found if e["occurred_at"] == t0][-1]  # a tie goes to the last asserted
            return first if t0 <= q else None
        visible = self.selected(anchor.select, q)
        return visible[-1] if visible else None

    @staticmethod
    def in_window(
        t: datetime, lo: datetime | None, hi: datetime | None, w: ast.Window, last: datetime | None = None
    ) -> bool:
        """An event at t (lasting to ``last``) overlaps the window (``lo`` None: no lower bound)."""
        last = t if last is None else last
        if lo is not None and not (last >= lo if w.start_inclusive else last > lo):
            return False
        return hi is None or (t <= hi if w.end_inclusive else t < hi)

    @staticmethod
    def span_end(e: Event) -> datetime:
        """The instant an event stops lasting: its end (a date-only end covers its whole day), or
        its own instant."""
        end: datetime | None = e["ended_at"]
        start: datetime = e["occurred_at"]
        if end is None:
            return start
        return end + timedelta(days=1) - EPS if e["ended_precision"] == "day" else end

    # ---- leaves
    def _Age(self, node: ast.Age, q: datetime) -> Val:
        return self.since(BIRTH, node.unit, q, "birth date")

    def _TimeSince(self, node: ast.TimeSince, q: datetime) -> Val:
        return self.since(node.anchor, node.unit, q, node.anchor.select.name)

    def since(self, anchor: ast.Anchor, unit: str, q: datetime, label: str) -> Val:
        """Whole calendar days from the anchor's date to the date of q, in days, or divided by
        the mean month (30.4375 days) or year (365.25 days), unrounded: day 183 is 183 / 30.4375
        months, the very number 183 d converts to (``units.Conversion.ratio``), so a comparison
        of the two is exact on the day (rounded to 6 decimals it read 6.01232, below 183 d's
        6.012320329)."""
        found = self.anchor(anchor, q)
        if found is None:
            return Val(None, f"no {label} recorded up to the date")
        days = (q.date() - found["occurred_at"].date()).days
        per = {"years": 365.25, "months": 30.4375, "days": 1.0}[unit]
        return Val(days / per, None, (found["seq"],), f"{label} on {day(found['occurred_at'])}")

    def _Const(self, node: ast.Const, q: datetime) -> Val:
        return Val(node.value)

    def _Param(self, node: ast.Param, q: datetime) -> Val:
        lit = self.literal(node)
        assert lit is not None
        value, unit = lit
        if isinstance(value, bool):
            return Val(value, note=f"parameter {node.name} = {value}")
        return Val(float(value), note=f"parameter {node.name} = {value:g} {unit or ''}".strip())

    def _RuleRef(self, node: ast.RuleRef, q: datetime) -> Val:
        return self.rule(node.rule, q)

    # ---- event-derived
    def _stale(self, name: str, d: Duration, e: Event) -> str:
        return f"no {name} within {d}: the latest, on {day(e['occurred_at'])}, is too old"

    def _Latest(self, node: ast.Latest, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, node.field)
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        x = float(e[node.field])
        # a dose carries no unit column: its unit is the one its selector fixes
        unit = field_unit(node.select, "dose") if node.field == "dose" else e["unit"]
        note = f"{name} {fmt(x)}" + (f" {unit}" if unit else "") + f" on {day(e['occurred_at'])}"
        if e["occurred_at"] > shift(q, v, -1):
            return Val(x, None, (e["seq"],), note)
        return Val(None, self._stale(name, v, e), (e["seq"],), note)

    def _FindingPresent(self, node: ast.FindingPresent, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        found = self.selected(node.select, q)  # present and absent, in the timeline's order
        lasting: list[Event] = []
        overruled: list[tuple[Event, Event]] = []  # (a record still lasting, the absent one ending it)
        for i, e in enumerate(found):
            if e["present"] is False:
                continue
            lasts = q <= self.span_end(e) if e["ended_at"] is not None else e["occurred_at"] > shift(q, v, -1)
            if not lasts:
                continue
            cut = next(
                (
                    a
                    for a in found[i + 1 :]
                    if a["present"] is False and (a["kind"], a["code"]) == (e["kind"], e["code"])
                ),
                None,
            )
            if cut is None:
                lasting.append(e)
            else:
                overruled.append((e, cut))
        if lasting:
            last = lasting[-1]
            what = last["code"] if last["code"] is not None else last["kind"]
            note = f"{name}: {what} since {day(last['occurred_at'])}"
            return Val(True, None, tuple(e["seq"] for e in lasting), note)
        if overruled:
            cut = max((c for _, c in overruled), key=timeline_order)
            what = cut["code"] if cut["code"] is not None else cut["kind"]
            used = sorted({(*timeline_order(x), x["seq"]) for pair in overruled for x in pair})
            note = f"{name}: {what} recorded absent on {day(cut['occurred_at'])}"
            return Val(False, None, tuple(s for *_, s in used), note)
        if not found:  # nothing recorded, present or absent: never examined, as far as the record goes
            return Val(False, None, (), f"no {name} recorded up to the date")
        return Val(False, None, (), f"no {name} lasting at the date")

    def _Normal(self, node: ast.Normal, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, "value")
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        unit = field_unit(node.select, "value")
        upper = self.threshold(node.upper, unit) if node.upper is not None else None
        lower = self.threshold(node.lower, unit) if node.lower is not None else None
        x = float(e["value"])
        note = f"{name} {fmt(x)} {unit}"
        lab_lo, lab_hi = e["ref_low"], e["ref_high"]
        if lab_lo is not None and lab_hi is not None:
            note += f" vs the lab's reference range {fmt(lab_lo)}–{fmt(lab_hi)}"
        elif lab_lo is not None or lab_hi is not None:
            # one bound is the lab's; the other, if any, is the rule's limit
            note += " vs the lab's reference range " + (
                f"≥ {fmt(lab_lo)}" if lab_lo is not None else f"≤ {fmt(lab_hi)}"
            )
            sign, limit = ("≥", lower) if lab_lo is None else ("≤", upper)
            if limit is not None:
                note += f", the limit {sign} {fmt(float(limit))}"
        else:
            # the rule's limit: its default, a site's value or a copy's (not the lab's: it gave none)
            bounds = [f"{sign} {fmt(float(b))}" for sign, b in (("≥", lower), ("≤", upper)) if b is not None]
            note += f" vs the limit {' '.join(bounds)} (no lab range)"
        if not e["occurred_at"] > shift(q, v, -1):
            return Val(None, self._stale(name, v, e), (e["seq"],), note)
        hi = e["ref_high"] if e["ref_high"] is not None else upper
        lo = e["ref_low"] if e["ref_low"] is not None else lower
        ok = (hi is None or x <= hi) and (lo is None or x >= lo)
        return Val(ok, None, (e["seq"],), note)

    def _Aggregate(self, node: ast.Aggregate, q: datetime) -> Val:
        w, name = node.window, node.select.name
        note = f"{node.fn} of {name}: 0 event(s) in the window"
        anchor_ev: tuple[int, ...] = ()
        ref: datetime | None = q
        if w.anchor is not None:
            a = self.anchor(w.anchor, q)
            ref = a["occurred_at"] if a else None
            anchor_ev = (a["seq"],) if a else ()
        if ref is None:
            assert w.anchor is not None
            return Val(None, f"no {w.anchor.select.name} recorded up to the date", note=note)
        lo = shift(ref, self.duration(w.start)) if w.start is not None else None
        hi = shift(ref, self.duration(w.end)) if w.end is not None else None
        fld = None if node.fn in ("count", "exists") else node.field
        if self.naive:
            found = [
                e
                for e in self.selected(node.select, q, fld)
                if self.in_window(e["occurred_at"], lo, hi, w, self.span_end(e) if node.spans else None)
            ]
        else:
            found = self.between(node.select, q, fld, lo, hi, w, node.spans)
        ev = anchor_ev + tuple(e["seq"] for e in found)
        note = f"{node.fn} of {name}: {len(found)} event(s) in the window"
        incomplete = hi is not None and hi > q
        if node.fn == "exists":
            if found:
                return Val(True, None, ev, note)
            if incomplete:
                return Val(None, f"no {name} so far, but the window ends after the date", ev, note)
            return Val(False, None, ev, note)
        if node.fn == "count":
            if incomplete:
                return Val(None, "the window ends after the date", ev, note)
            return Val(float(len(found)), None, ev, note)
        if not found:
            return Val(None, f"no {name} in the window", ev, note)
        xs = [float(e[node.field]) for e in found]
        if node.fn == "first":
            t0 = found[0]["occurred_at"]
            x = float([e for e in found if e["occurred_at"] == t0][-1][node.field])
        else:
            fns: dict[str, Callable[[list[float]], float]] = {
                "min": min,
                "max": max,
                "sum": math.fsum,
                "mean": lambda v: math.fsum(v) / len(v),
                "last": lambda v: v[-1],
            }
            x = fns[node.fn](xs)
        return Val(x, None, ev, note)

    def _OnDrug(self, node: ast.OnDrug, q: datetime) -> Val:
        """On a drug from a start or dose change until its next start, dose change, stop or
        discontinuation; a single dose (``frequency: once``) makes it on for the rest of its
        day, neither starting nor ending a course."""
        latest: list[Event] = []
        on = False
        for drug in node.drugs:
            meds = self.medications(drug, q, node.except_routes)
            course = [m for m in meds if not single_dose(m)]
            single = [m for m in meds if single_dose(m)]
            if course:
                latest.append(course[-1])
                on = on or course[-1]["kind"] in ON_KINDS
            if single:
                latest.append(single[-1])
                on = on or single[-1]["occurred_at"].date() == q.date()
        latest.sort(key=timeline_order)
        if latest:
            parts = sorted(latest, key=lambda e: (str(e["drug"]), single_dose(e)))
            note = "; ".join(
                f"{e['drug']}: "
                + ("single dose" if single_dose(e) else str(e["kind"]).replace("_", " "))
                + f" on {day(e['occurred_at'])}"
                for e in parts
            )
        else:
            routes = f" other than by {' or '.join(node.except_routes)} route" if node.except_routes else ""
            note = f"none of {', '.join(node.drugs)} recorded up to the date{routes}"
        return Val(on, None, tuple(e["seq"] for e in latest), note)

    def _DailyDose(self, node: ast.DailyDose, q: datetime) -> Val:
        v = self.duration(node.weight_within)
        unit = "mg/kg/day" if node.per_kg else "mg/day"
        # the course's dose: a single dose (frequency once) in it neither changes nor ends it
        meds = [m for m in self.medications(node.drug, q) if not single_dose(m)]
        if not meds:
            return Val(0.0, None, (), f"no {node.drug} recorded: 0 {unit}")
        m = meds[-1]
        if m["kind"] not in ON_KINDS:
            return Val(0.0, None, (m["seq"],), f"{node.drug} stopped on {day(m['occurred_at'])}: 0 {unit}")
        w = self.latest(WEIGHT, q, "value")
        needs_weight = m["dose_unit"] == ("mg" if node.per_kg else "mg/kg")
        ev = (m["seq"],) + ((w["seq"],) if needs_weight and w is not None else ())
        note: str | None = None
        if m["dose"] is not None and m["dose_unit"] is not None:
            note = f"{node.drug} {fmt(m['dose'])} {m['dose_unit']} {m['frequency'] or '(no frequency)'}"
            if needs_weight and w is not None:
                note += f", weight {fmt(w['value'])} kg on {day(w['occurred_at'])}"
        per_day = self.rules.codebook.frequencies.get(m["frequency"]) if m["frequency"] is not None else None
        if per_day is None:
            return Val(None, f"frequency of the {node.drug} dose not recorded", ev, note)
        if needs_weight and w is None:
            return Val(None, "no weight recorded up to the date", ev, note)
        if needs_weight and w is not None and not w["occurred_at"] > shift(q, v, -1):
            return Val(None, self._stale("weight", v, w), ev, note)
        daily = m["dose"] * per_day
        if needs_weight:
            assert w is not None
            daily = daily / w["value"] if node.per_kg else daily * w["value"]
        return Val(rnd(daily, DOSE_DECIMALS), None, ev, note)

    # ---- combinations
    def _Compare(self, node: ast.Compare, q: datetime) -> Val:
        left_t = self.type(node.left)
        left = self.evaluate(node.left, q)
        words = display_unit(left_t.unit)
        shown = f" {words}" if words else ""
        if left_t.kind == "bool":
            right = self.evaluate(node.right, q)
            value = (
                None if left.value is None or right.value is None else CMP[node.op](left.value, right.value)
            )
            return Val(value, _concat([left.why, right.why]), left.ev + right.ev)
        if isinstance(node.right, ast.Const | ast.Param):  # a literal (see ``literal``)
            rhs = self.threshold(node.right, left_t.unit)
            if left.value is None:
                return Val(None, left.why, left.ev)
            value = CMP[node.op](rnd(float(left.value), 9), rhs)
            note = f"{fmt(float(left.value))} {_holds(node.op, value)} {fmt(float(rhs))}{shown}"
            return Val(value, left.why, left.ev, note)
        right = self.evaluate(node.right, q)
        if left.value is None or right.value is None:
            return Val(None, _concat([left.why, right.why]), left.ev + right.ev)
        rx = self.scale(float(right.value), self.type(node.right).unit, left_t.unit)
        value = CMP[node.op](rnd(float(left.value), 9), rnd(rx, 9))
        note = f"{fmt(float(left.value))} {_holds(node.op, value)} {fmt(rx)}{shown}"
        return Val(value, _concat([left.why, right.why]), left.ev + right.ev, note)

    @staticmethod
    def _counted(vals: list[Val], unknown: str = " unknown") -> str:
        nt = sum(1 for v in vals if v.value is True)
        nn = sum(1 for v in vals if v.value is None)
        return f"{nt} of {len(vals)} true" + (f", {nn}{unknown}" if nn else "")

    def _Logic(self, node: ast.Logic, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        note = self._counted(vals)
        decisive = node.op != "all"  # the value that decides: false for all, true for any
        hits = [v for v in vals if v.value is decisive]
        if hits:
            return Val(decisive, None, _flat(hits), note)
        unknown = [v for v in vals if v.value is None]
        if unknown:
            return Val(None, _distinct(v.why for v in unknown), _flat(vals), note)
        return Val(not decisive, None, _flat(vals), note)

    def _Not(self, node: ast.Not, q: datetime) -> Val:
        v = self.evaluate(node.item, q)  # its note states facts (counts, values): still true
        return Val(None if v.value is None else not v.value, v.why, v.ev, v.note)

    def _AtLeast(self, node: ast.AtLeast, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        true = [v for v in vals if v.value is True]
        unknown = [v for v in vals if v.value is None]
        nt, nn = len(true), len(unknown)
        note = f"{nt} of {len(vals)} true (need {node.n})" + (f", {nn} unknown" if nn else "")
        if len(true) >= node.n:
            return Val(True, None, _flat(true), note)
        if len(true) + len(unknown) < node.n:
            return Val(False, None, _flat(v for v in vals if v.value is False), note)
        return Val(None, _distinct(v.why for v in unknown), _flat(vals), note)

    def _CountTrue(self, node: ast.CountTrue, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        true = [v for v in vals if v.value is True]
        return Val(float(len(true)), None, _flat(true), self._counted(vals, " unknown (not counted)"))

    def _Arith(self, node: ast.Arith, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        ev = _flat(vals)
        unit = self.type(node.items[0]).unit
        xs: list[float | None] = [None if v.value is None else float(v.value) for v in vals]
        if node.op in ("add", "sub", "min", "max"):
            xs = [
                None if x is None else self.scale(x, self.type(i).unit, unit)
                for x, i in zip(xs, node.items, strict=True)
            ]
        note = f"{node.op}(" + ", ".join(fmt(x) or "?" for x in xs) + ")"
        unknown = [v for v in vals if v.value is None]
        if unknown:
            return Val(None, _concat(v.why for v in unknown), ev, note)
        known = [x for x in xs if x is not None]
        if node.op == "div":
            if any(x == 0 for x in known[1:]):
                return Val(None, "division by zero", ev, note)
            x = known[0]
            for d in known[1:]:
                x /= d
        elif node.op == "mul":
            x = math.prod(known)
        else:
            ops: dict[str, Callable[[list[float]], float]] = {
                "add": sum,
                "sub": lambda v: v[0] - sum(v[1:]),
                "min": min,
                "max": max,
            }
            x = ops[node.op](known)
        return Val(rnd(x, 9), None, ev, note)

    def _Clip(self, node: ast.Clip, q: datetime) -> Val:
        v = self.evaluate(node.item, q)
        if v.value is None:
            return Val(None, v.why, v.ev)
        x0 = x = float(v.value)
        if node.high is not None:
            x = min(x, node.high)
        if node.low is not None:
            x = max(x, node.low)
        return Val(x, v.why, v.ev, f"clipped from {fmt(x0)}" if x != x0 else None)

    def _Coalesce(self, node: ast.Coalesce, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        for v in vals:
            if v.value is not None:
                return Val(v.value, v.why, v.ev)
        return Val(None, _concat(v.why for v in vals))

    def _UnknownUnless(self, node: ast.UnknownUnless, q: datetime) -> Val:
        v = self.evaluate(node.value, q)
        c = self.evaluate(node.condition, q)
        if c.value is True:  # the condition's evidence is what made the value known
            return Val(v.value, v.why, v.ev + c.ev, v.note)
        why = _concat([node.reason, c.why]) if c.value is None else node.reason
        return Val(None, why, v.ev + c.ev, v.note)

    def _PctChange(self, node: ast.PctChange, q: datetime) -> Val:
        v = self.evaluate(node.value, q)
        b = self.evaluate(node.baseline, q)
        ev = b.ev + v.ev
        if v.value is None or b.value is None:
            return Val(None, _concat([v.why, b.why]), ev)
        x, bx = (
            float(v.value),
            self.scale(float(b.value), self.type(node.baseline).unit, self.type(node.value).unit),
        )
        note = f"from {fmt(bx)} to {fmt(x)}" + (" (baseline 0)" if bx == 0 else "")
        if bx == 0:
            return Val(math.inf if x > 0 else -math.inf if x < 0 else 0.0, None, ev, note)
        return Val(rnd((x - bx) / abs(bx) * 100, 6), None, ev, note)

    def anchored_at(self, node: ast.AtAnchor, t: datetime) -> datetime:
        at = shift(t, self.duration(node.offset))
        return end_of_day(at.date()) if node.whole_day else at

    def _AtAnchor(self, node: ast.AtAnchor, q: datetime) -> Val:
        name, off = node.anchor.select.name, self.duration(node.offset)
        a = self.anchor(node.anchor, q)
        if a is None:
            return Val(None, f"no {name} recorded up to the date")
        at = self.anchored_at(node, a["occurred_at"])
        shifted = f"{name} + {off}" if not off.is_zero else name
        label = f"on the day of the {shifted}" if node.whole_day else f"at the {shifted}"
        note = f"{label} ({day(at)})"
        if at > q:
            late = (
                f"the day of the {shifted} ends after the date"
                if node.whole_day
                else f"{off} after the {name} is after the date"
            )
            return Val(None, late, (a["seq"],), note)
        inner = self.evaluate(node.expr, at)
        why = f"{note}: {inner.why}" if inner.why else None
        return Val(inner.value, why, (a["seq"], *inner.ev), note)

    def _HeldFor(self, node: ast.HeldFor, q: datetime) -> Val:
        d = self.duration(node.duration)
        lo = shift(q, d, -1)
        moments = [lo, *(c for c in self.candidates(node.expr) if lo < c <= q)]
        vals = [self.evaluate(node.expr, m) for m in moments]
        ev = tuple(sorted({s for v in vals for s in v.ev}))
        false = [m for m, v in zip(moments, vals, strict=True) if v.value is False]
        if false:
            return Val(False, None, ev, f"not true on {day(min(false))} (within the last {d})")
        note = f"checked at every change over the last {d}"
        whys = _clauses(v.why for v in vals if v.value is None)
        if any(v.value is None for v in vals):
            why = f"not known at every moment of the last {d}: " + "; ".join(whys) if whys else None
            return Val(None, why, ev, note)
        return Val(True, None, ev, note)

    # ---- episodes
    def episodes(
        self, spec: ast.Episodes, merged_across_gaps: bool = True, upto: datetime | None = None
    ) -> list[Episode]:
        """Episodes over the whole record, merged across gaps or raw (an open episode ends at FAR).
        ``upto`` (raw episodes only): those starting at or before it are enough, so a condition's
        episodes are evaluated only up to the first moment after it at which the condition is
        not true (where the episode around ``upto`` ends)."""
        assert upto is None or not merged_across_gaps
        if spec.when is None:
            upto = None  # recorded episodes cost nothing to find
        key = (id(spec), merged_across_gaps, upto)
        if key in self.ep_memo:
            return self.ep_memo[key]
        raw: list[
            tuple[datetime, int, datetime, tuple[int, ...], tuple[tuple[datetime, tuple[int, ...]], ...]]
        ] = []
        if spec.select is not None:
            for found in self.selected(spec.select):
                end = FAR if found["ended_at"] is None else self.span_end(found)
                raw.append((found["occurred_at"], found["asserted_seq"], end, (found["seq"],), ()))
        else:
            assert spec.when is not None
            moments = [ORIGIN, *(m for m in self.candidates(spec.when) if m > ORIGIN)]
            vals = []
            for m in moments:
                vals.append(self.evaluate(spec.when, m))
                if upto is not None and m > upto and vals[-1].value is not True:
                    break
            moments = moments[: len(vals)]
            i = 0
            while i < len(moments):
                if vals[i].value is not True:
                    i += 1
                    continue
                j = i
                while j + 1 < len(moments) and vals[j + 1].value is True:
                    j += 1
                end = moments[j + 1] - EPS if j + 1 < len(moments) else FAR  # false from the next moment
                ev = tuple(sorted({s for v in vals[i : j + 1] for s in v.ev}))
                evq = tuple((moments[k], vals[k].ev) for k in range(i, j + 1))
                raw.append((moments[i], 0, end, ev, evq))
                i = j + 1
        raw.sort(key=lambda r: (r[0], r[1]))
        if not merged_across_gaps:
            episodes = [Episode(s, e, ev, evq) for s, _, e, ev, evq in raw]
            self.ep_memo[key] = episodes
            return episodes
        gap = self.duration(spec.merge_gap)
        merged: list[Episode] = []
        for s, _, e, ev, _evq in raw:
            # merged when the uncovered time between them (from the instant after the end) ≤ gap
            if merged and (merged[-1].e >= FAR or s <= shift(merged[-1].e + EPS, gap)):
                last = merged[-1]
                merged[-1] = Episode(last.s, max(last.e, e), last.ev + ev)
            else:
                merged.append(Episode(s, e, ev))
        self.ep_memo[key] = merged
        return merged

    def _InEpisode(self, node: ast.InEpisode, q: datetime) -> Val:
        # raw intervals: bridging a gap would need the next episode, after q
        inside = [ep for ep in self.episodes(node.episodes, False, q) if ep.s <= q <= ep.e]
        note = None
        derived = node.episodes.when is not None
        if inside:
            end = max(ep.e for ep in inside)
            start = min(ep.s for ep in inside)
            note = f"episode from {'the start of the record' if start == ORIGIN else day(start)}"
            # a condition's episode ends when the condition stops holding, which is known
            # only after q: no end is shown (a recorded episode's end is in its event)
            if not derived:
                note += " (open)" if end >= FAR else f" to {day(end)}"
        if derived:
            ev = tuple(sorted({s for ep in inside for m, mev in ep.evq if m <= q for s in mev}))
        else:
            ev = tuple(s for ep in inside for s in ep.ev)
        return Val(bool(inside), None, ev, note)

    def _EpisodeCount(self, node: ast.EpisodeCount, q: datetime) -> Val:
        w = node.window
        ref: datetime | None = q
        anchor_ev: tuple[int, ...] = ()
        if w.anchor is not None:
            a = self.anchor(w.anchor, q)
            if a is None:
                return Val(
                    None,
                    f"no {w.anchor.select.name} recorded up to the date",
                    note="0 episode(s) starting in the window",
                )
            ref, anchor_ev = a["occurred_at"], (a["seq"],)
        assert ref is not None
        lo = shift(ref, self.duration(w.start)) if w.start is not None else None
        hi = shift(ref, self.duration(w.end)) if w.end is not None else None
        kept = []
        for ep in self.episodes(node.episodes):
            if ep.s <= q and self.in_window(ep.s, lo, hi, w):
                when = node.starting_when
                if when is None or self.evaluate(when, ep.s).value is True:
                    kept.append(ep)
        ev = anchor_ev + tuple(s for ep in kept for s in ep.ev)
        note = f"{len(kept)} episode(s) starting in the window"
        if hi is not None and hi > q:
            return Val(None, "the window ends after the date", ev, note)
        return Val(float(len(kept)), None, ev, note)

    # ---- where values can change
    def candidates(self, node: ast.Node) -> list[datetime]:
        """A superset of the instants at which ``node``'s value or evidence can change."""
        if node.nid not in self.cp_memo:
            self.cp_memo[node.nid] = sorted(self._candidates(node))
        return self.cp_memo[node.nid]

    def _around(self, base: Iterable[datetime], shifts: Sequence[Duration | None]) -> set[datetime]:
        out: set[datetime] = set()
        for t in base:
            if t >= FAR:
                continue
            for d in shifts:
                c = t if d is None else shift(t, d)
                out |= {c, c + EPS}
                if d is not None and d.unit in ("month", "year") and t.day >= 28:
                    # q − months clips the day, so it runs backwards at midnight near a month end
                    first = c.replace(hour=0, minute=0, second=0, microsecond=0)
                    for k in range(-3, 5):
                        d0 = first + timedelta(days=k)
                        out |= {d0, d0 + (c - first), d0 + (c - first) + EPS}
                    out.add(add_months(first.replace(day=1), 1))
        return out

    def _candidates(self, node: ast.Node) -> set[datetime]:
        def times(evs: Iterable[Event]) -> list[datetime]:
            return [e["occurred_at"] for e in evs]

        if isinstance(node, ast.Const | ast.Param):
            return set()
        if isinstance(node, ast.RuleRef):
            return set(self.candidates(self.rules.rules[node.rule].define))
        if isinstance(node, ast.Latest | ast.Normal):
            return self._around(times(self.selected(node.select)), [None, self.duration(node.within)])
        if isinstance(node, ast.FindingPresent):
            records = self.selected(node.select)
            present = [e for e in records if e["present"] is not False]
            out = self._around(times(present), [None, self.duration(node.within)])
            out |= self._around((self.span_end(e) for e in present if e["ended_at"] is not None), [None])
            return out | self._around(times(e for e in records if e["present"] is False), [None])
        if isinstance(node, ast.Aggregate | ast.EpisodeCount):
            w = node.window
            if isinstance(node, ast.Aggregate):
                starts = times(self.selected(node.select))
                if node.spans:  # an event also leaves the window at its end
                    starts += [self.span_end(e) for e in self.selected(node.select)]
            else:
                starts = [ep.s for ep in self.episodes(node.episodes)]
            start = [self.duration(w.start)] if w.start is not None else []  # ever: no lower edge
            end = self.duration(w.end) if w.end is not None else Duration(0, "day")
            if w.anchor is not None:
                out = self._around(times(self.selected(w.anchor.select)), [None, *start, end])
                out |= self._around(starts, [None])
            else:
                out = self._around(starts, [None, *(s.negate() for s in start), end.negate()])
            if isinstance(node, ast.EpisodeCount) and node.starting_when is not None:
                out |= set(self.candidates(node.starting_when))
            return out
        if isinstance(node, ast.OnDrug | ast.DailyDose):
            drugs = node.drugs if isinstance(node, ast.OnDrug) else (node.drug,)
            out = self._around(times(e for e in self.events if e["drug"] in drugs), [None])
            if isinstance(node, ast.OnDrug):  # a single dose is on until its day ends
                ends = (
                    end_of_day(e["occurred_at"].date())
                    for e in self.events
                    if e["drug"] in drugs and single_dose(e)
                )
                out |= self._around(ends, [None])
            if isinstance(node, ast.DailyDose):
                weights = times(e for e in self.events if e["kind"] == "weight")
                out |= self._around(weights, [None, self.duration(node.weight_within)])
            return out
        if isinstance(node, ast.AtAnchor):
            anchors = times(self.selected(node.anchor.select))
            out = self._around(anchors, [None, self.duration(node.offset)])
            if node.whole_day:
                out |= self._around([self.anchored_at(node, t) for t in anchors], [None])
            return out
        if isinstance(node, ast.HeldFor):
            inner = self.candidates(node.expr)
            return self._around(inner, [None, self.duration(node.duration)])
        if isinstance(node, ast.InEpisode):
            eps = self.episodes(node.episodes, merged_across_gaps=False)
            out = self._around([ep.s for ep in eps] + [ep.e for ep in eps], [None])
            if node.episodes.when is not None:
                out |= set(self.candidates(node.episodes.when))
            return out
        if isinstance(node, ast.Age | ast.TimeSince):
            # the anchor event appears (or, for the last one, moves); the count of days then
            # steps at every midnight, which matters only where it is compared (below)
            return set(times(self.selected(anchor_of(node).select)))
        out = set()
        if isinstance(node, ast.Compare):
            if self._crossing is None:
                self._crossing = crossings(self.rules)
            for found in self._crossing(node) or ():
                for e in self.selected(found.anchor.select):
                    midnight = datetime.combine(e["occurred_at"].date(), time())
                    room = (FAR - midnight).days
                    out |= {midnight + timedelta(days=k) for k in found.days if k < room}
        for child in ast.children(node):
            out |= set(self.candidates(child))
        return out
