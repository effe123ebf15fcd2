"""A plain-Python reference evaluator of the rule language, used only by the tests.

It replays the current events of ONE patient (dicts as returned by ``Store.events``) and
evaluates a rule's tree at an instant ``q`` node by node, written from the README ("What
--at means", "The language"), not from the compiler's SQL. It is deliberately naive: every
node at every instant is computed from the raw event list. Only ``held_for`` and condition
episodes need the value of a subtree over a stretch of time; they evaluate it at a generous
superset of the instants where it can change (:meth:`Reference.candidates`) — every event
time shifted by the durations the subtree uses, with a microsecond either side and, for
calendar months and years, every day near a month end.

``evaluate`` returns :class:`Val` ``(value, why, ev)``: ``value`` is a bool or float, or
None for unknown; ``why`` is the reason (the engine's wording) and ``ev`` the sequence
numbers of the event versions used. The evidence contract (what the engine must report):

- ``latest`` / ``normal``: the latest matching event, also when it is too old (the reason
  names its date); ``daily_dose``: the latest dose event and, when the dose needs it, the
  latest weight; ``on_drug``: the latest start/change/stop of each drug.
- aggregates and ``episode_count``: every event (episode) counted in the window, plus the
  anchor event of an anchored window.
- ``all``: the false items when false, else every item; ``any``: the true items when true,
  else every item; ``at_least``: the true items when true, the false items when false, else
  every item; ``count_true``: the true items; ``coalesce``: the item whose value was taken.
- ``unknown_unless``: the value's evidence, plus the condition's when it did not hold.
- ``at_anchor``: the anchor event, plus the subtree's evidence when the anchored moment is
  at or before ``q`` (never events from after ``q``).
- ``held_for``: everything used at every moment checked.
- ``in_episode``: the events of the episode containing ``q``.
- comparisons, arithmetic, ``not``, ``clip``, ``pct_change``, rule references: the union of
  their operands'.

``in_episode`` tests the raw intervals (no look-ahead: bridging a gap needs the next episode,
which lies after ``q``); ``episode_count`` counts episodes merged across gaps ≤ merge_gap.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from timeline import codes
from timeline.language import ast
from timeline.language.durations import Duration
from timeline.language.loader import RuleSet, field_unit
from timeline.units import conversion

EPS = timedelta(microseconds=1)
FAR = datetime(9999, 12, 31)
MED_KINDS = ("medication_start", "medication_dose_change", "medication_stop", "discontinuation")
ON_KINDS = ("medication_start", "medication_dose_change")

CMP: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Val:
    value: bool | float | None
    why: str | None = None
    ev: tuple[int, ...] = ()


@dataclass(frozen=True)
class Episode:
    s: datetime
    e: datetime  # inclusive end; FAR while open
    ev: tuple[int, ...]


# ---- time -----------------------------------------------------------------------------------


def end_of_day(d: date | str) -> datetime:
    day = date.fromisoformat(d) if isinstance(d, str) else d
    return datetime.combine(day, time()) + timedelta(days=1) - EPS


def add_months(t: datetime, n: int) -> datetime:
    """Calendar months: the day is clipped to the month's length (31 Jan + 1 month = 28 Feb)."""
    y, m = divmod(t.month - 1 + n, 12)
    year, month = t.year + y, m + 1
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


def shift(t: datetime, d: Duration, sign: int = 1) -> datetime:
    n = d.amount * sign
    if d.unit == "hour":
        return t + timedelta(hours=n)
    if d.unit == "day":
        return t + timedelta(days=n)
    if d.unit == "week":
        return t + timedelta(days=7 * n)
    return add_months(t, n if d.unit == "month" else 12 * n)


def rnd(x: float, n: int) -> float:
    """DuckDB's round(): half away from zero; infinities unchanged."""
    if not math.isfinite(x):
        return x
    f = 10.0**n
    a = abs(x) * f
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return math.copysign(r / f, x)


def _concat(whys: Iterable[str | None]) -> str | None:
    parts = [w for w in whys if w]
    return "; ".join(parts) if parts else None


def _distinct(whys: Iterable[str | None]) -> str | None:
    """all / any / at_least name each distinct reason once, in sorted order."""
    parts = sorted({w for w in whys if w})
    return "; ".join(parts) if parts else None


def _flat(vals: Iterable[Val]) -> tuple[int, ...]:
    return tuple(s for v in vals for s in v.ev)


# ---- the evaluator ------------------------------------------------------------------------------


@dataclass
class Reference:
    rules: RuleSet
    events: Sequence[dict[str, Any]]
    memo: dict[tuple[int, datetime], Val] = field(default_factory=dict)
    cp_memo: dict[int, list[datetime]] = field(default_factory=dict)
    ep_memo: dict[tuple[int, bool], list[Episode]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = sorted(self.events, key=lambda e: (e["occurred_at"], e["seq"]))

    # -- entry points
    def rule(self, rule_id: str, q: datetime) -> Val:
        """A rule's value, in the unit its file declares."""
        v = self.evaluate(self.rules.rules[rule_id].define, q)
        c = self.rules.reported(rule_id)
        if c is None or v.value is None:
            return v
        return Val(rnd(c.apply(float(v.value)), 9), v.why, v.ev)

    def evaluate(self, node: ast.Node, q: datetime) -> Val:
        key = (node.nid, q)
        if key not in self.memo:
            method: Callable[[Any, datetime], Val] = getattr(self, "_" + type(node).__name__)
            self.memo[key] = method(node, q)
        return self.memo[key]

    # -- helpers
    def type(self, node: ast.Node) -> ast.Type:
        return self.rules.types[node.nid]

    def duration(self, ref: ast.DurationRef) -> Duration:
        if ref.value is not None:
            return ref.value
        assert ref.param is not None
        value = self.rules.rules[ref.param[0]].param(ref.param[1]).effective
        assert isinstance(value, Duration)
        return value.negate() if ref.negate else value

    def literal(self, node: ast.Node) -> tuple[float | bool, str | None] | None:
        if isinstance(node, ast.Const):
            return node.value, node.unit
        if isinstance(node, ast.Param):
            spec = self.rules.rules[node.rule].param(node.name)
            assert not isinstance(spec.effective, Duration)
            return spec.effective, spec.unit
        return None

    def threshold(self, node: ast.Node, target: str | None) -> float | bool:
        lit = self.literal(node)
        assert lit is not None
        value, unit = lit
        if isinstance(value, bool):
            return value
        if unit is not None and target is not None and unit != target:
            value = conversion(unit, target).apply(value)
        return rnd(float(value), 9)

    def scale(self, x: float, frm: str | None, to: str | None) -> float:
        if frm in (None, "?") or to in (None, "?") or frm == to:
            return x
        assert frm is not None and to is not None
        return conversion(frm, to).apply(x)

    def matches(self, sel: ast.Selector, e: dict[str, Any]) -> bool:
        if sel.kinds and e["kind"] not in sel.kinds:
            return False
        if sel.codes and e["code"] not in sel.codes:
            return False
        if sel.drugs and e["drug"] not in sel.drugs:
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

    def selected(
        self, sel: ast.Selector, q: datetime | None = None, fld: str | None = None
    ) -> list[dict[str, Any]]:
        """Matching events (ordered by occurred_at, seq), visible at q, with the field set."""
        return [
            e
            for e in self.events
            if self.matches(sel, e)
            and (q is None or e["occurred_at"] <= q)
            and (fld is None or e.get(fld) is not None)
        ]

    def latest(self, sel: ast.Selector, q: datetime, fld: str) -> dict[str, Any] | None:
        found = self.selected(sel, q, fld)
        return found[-1] if found else None  # the last instant; at a tie the highest seq

    def anchor(self, anchor: ast.Anchor, q: datetime) -> dict[str, Any] | None:
        found = self.selected(anchor.select)
        if anchor.which == "first":
            if not found:
                return None
            t0 = found[0]["occurred_at"]
            first = [e for e in found if e["occurred_at"] == t0][-1]  # a tie goes to the highest seq
            return first if t0 <= q else None
        visible = [e for e in found if e["occurred_at"] <= q]
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
    def span_end(e: dict[str, Any]) -> datetime:
        """The instant an event stops lasting: its end (a date-only end covers its whole day), or
        its own instant."""
        end = e["ended_at"]
        if end is None:
            return e["occurred_at"]
        return end + timedelta(days=1) - EPS if e["ended_precision"] == "day" else end

    # ---- leaves
    def _Age(self, node: ast.Age, q: datetime) -> Val:
        birth = ast.Anchor(select=ast.Selector(name="birth", kinds=("birth",)), which="first")
        return self.since(birth, node.unit, q, "birth date")

    def _TimeSince(self, node: ast.TimeSince, q: datetime) -> Val:
        return self.since(node.anchor, node.unit, q, node.anchor.select.name)

    def since(self, anchor: ast.Anchor, unit: str, q: datetime, label: str) -> Val:
        """Whole calendar days from the anchor's date to the date of q, in days, or divided by
        the mean month (30.4375 days) or year (365.25 days)."""
        found = self.anchor(anchor, q)
        if found is None:
            return Val(None, f"no {label} recorded up to the date")
        days = (q.date() - found["occurred_at"].date()).days
        per = {"years": 365.25, "months": 30.4375, "days": 1.0}[unit]
        return Val(rnd(days / per, 6), None, (found["seq"],))

    def _Const(self, node: ast.Const, q: datetime) -> Val:
        return Val(node.value)

    def _Param(self, node: ast.Param, q: datetime) -> Val:
        lit = self.literal(node)
        assert lit is not None
        return Val(lit[0] if isinstance(lit[0], bool) else float(lit[0]))

    def _RuleRef(self, node: ast.RuleRef, q: datetime) -> Val:
        return self.rule(node.rule, q)

    # ---- event-derived
    def _stale(self, name: str, d: Duration, e: dict[str, Any]) -> str:
        return f"no {name} within {d}: the latest, on {e['occurred_at']:%Y-%m-%d}, is too old"

    def _Latest(self, node: ast.Latest, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, node.field)
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        if e["occurred_at"] > shift(q, v, -1):
            return Val(float(e[node.field]), None, (e["seq"],))
        return Val(None, self._stale(name, v, e), (e["seq"],))

    def _Normal(self, node: ast.Normal, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, "value")
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        if not e["occurred_at"] > shift(q, v, -1):
            return Val(None, self._stale(name, v, e), (e["seq"],))
        unit = field_unit(node.select, "value")
        upper = e["ref_high"] if e["ref_high"] is not None else None
        lower = e["ref_low"] if e["ref_low"] is not None else None
        if upper is None and node.upper is not None:
            upper = self.threshold(node.upper, unit)
        if lower is None and node.lower is not None:
            lower = self.threshold(node.lower, unit)
        x = e["value"]
        ok = (upper is None or x <= upper) and (lower is None or x >= lower)
        return Val(ok, None, (e["seq"],))

    def _Aggregate(self, node: ast.Aggregate, q: datetime) -> Val:
        w, name = node.window, node.select.name
        anchor_ev: tuple[int, ...] = ()
        ref: datetime | None = q
        if w.anchor is not None:
            a = self.anchor(w.anchor, q)
            ref = a["occurred_at"] if a else None
            anchor_ev = (a["seq"],) if a else ()
        if ref is None:
            assert w.anchor is not None
            return Val(None, f"no {w.anchor.select.name} up to the date")
        lo = shift(ref, self.duration(w.start)) if w.start is not None else None
        hi = shift(ref, self.duration(w.end)) if w.end is not None else None
        fld = None if node.fn in ("count", "exists") else node.field
        found = [
            e
            for e in self.selected(node.select, q, fld)
            if self.in_window(e["occurred_at"], lo, hi, w, self.span_end(e) if node.spans else None)
        ]
        ev = anchor_ev + tuple(e["seq"] for e in found)
        incomplete = hi is not None and hi > q
        if node.fn == "exists":
            if found:
                return Val(True, None, ev)
            if incomplete:
                return Val(None, f"no {name} so far, but the window ends after the date", ev)
            return Val(False, None, ev)
        if node.fn == "count":
            if incomplete:
                return Val(None, "the window ends after the date", ev)
            return Val(float(len(found)), None, ev)
        if not found:
            return Val(None, f"no {name} in the window", ev)
        xs = [float(e[node.field]) for e in found]
        if node.fn == "first":
            t0 = found[0]["occurred_at"]
            x = float([e for e in found if e["occurred_at"] == t0][-1][node.field])
        else:
            x = {
                "min": min,
                "max": max,
                "sum": math.fsum,
                "mean": lambda v: math.fsum(v) / len(v),
                "last": lambda v: v[-1],
            }[node.fn](xs)
        return Val(x, None, ev)

    def _OnDrug(self, node: ast.OnDrug, q: datetime) -> Val:
        latest = []
        for drug in node.drugs:
            meds = [
                e
                for e in self.events
                if e["kind"] in MED_KINDS
                and e["drug"] == drug
                and e["occurred_at"] <= q
                and e["route"] not in node.except_routes
            ]
            if meds:
                latest.append(meds[-1])
        latest.sort(key=lambda e: (e["occurred_at"], e["seq"]))
        return Val(any(e["kind"] in ON_KINDS for e in latest), None, tuple(e["seq"] for e in latest))

    def _DailyDose(self, node: ast.DailyDose, q: datetime) -> Val:
        v = self.duration(node.weight_within)
        meds = [
            e
            for e in self.events
            if e["kind"] in MED_KINDS and e["drug"] == node.drug and e["occurred_at"] <= q
        ]
        if not meds or meds[-1]["kind"] not in ON_KINDS:
            return Val(0.0, None, (meds[-1]["seq"],) if meds else ())
        m = meds[-1]
        weights = [
            e
            for e in self.events
            if e["kind"] == "weight" and e["value"] is not None and e["occurred_at"] <= q
        ]
        w = weights[-1] if weights else None
        needs_weight = m["dose_unit"] == ("mg" if node.per_kg else "mg/kg")
        ev = (m["seq"],) + ((w["seq"],) if needs_weight and w is not None else ())
        per_day = codes.FREQUENCIES.get(m["frequency"]) if m["frequency"] is not None else None
        if per_day is None:
            return Val(None, f"frequency of the {node.drug} dose not recorded", ev)
        if needs_weight and w is None:
            return Val(None, "no weight recorded up to the date", ev)
        if needs_weight and w is not None and not w["occurred_at"] > shift(q, v, -1):
            return Val(None, self._stale("weight", v, w), ev)
        daily = m["dose"] * per_day
        if needs_weight:
            assert w is not None
            daily = daily / w["value"] if node.per_kg else daily * w["value"]
        return Val(rnd(daily, 6), None, ev)

    # ---- combinations
    def _Compare(self, node: ast.Compare, q: datetime) -> Val:
        left_t = self.type(node.left)
        left = self.evaluate(node.left, q)
        if left_t.kind == "bool":
            right = self.evaluate(node.right, q)
            value = (
                None if left.value is None or right.value is None else CMP[node.op](left.value, right.value)
            )
            return Val(value, _concat([left.why, right.why]), left.ev + right.ev)
        if self.literal(node.right) is not None:
            rhs = self.threshold(node.right, left_t.unit)
            value = None if left.value is None else CMP[node.op](rnd(float(left.value), 9), rhs)
            return Val(value, left.why, left.ev)
        right = self.evaluate(node.right, q)
        if left.value is None or right.value is None:
            value = None
        else:
            rx = self.scale(float(right.value), self.type(node.right).unit, left_t.unit)
            value = CMP[node.op](rnd(float(left.value), 9), rnd(rx, 9))
        return Val(value, _concat([left.why, right.why]), left.ev + right.ev)

    def _Logic(self, node: ast.Logic, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        decisive = node.op != "all"  # the value that decides: false for all, true for any
        hits = [v for v in vals if v.value is decisive]
        if hits:
            return Val(decisive, None, _flat(hits))
        unknown = [v for v in vals if v.value is None]
        if unknown:
            return Val(None, _distinct(v.why for v in unknown), _flat(vals))
        return Val(not decisive, None, _flat(vals))

    def _Not(self, node: ast.Not, q: datetime) -> Val:
        v = self.evaluate(node.item, q)
        return Val(None if v.value is None else not v.value, v.why, v.ev)

    def _AtLeast(self, node: ast.AtLeast, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        true = [v for v in vals if v.value is True]
        unknown = [v for v in vals if v.value is None]
        if len(true) >= node.n:
            return Val(True, None, _flat(true))
        if len(true) + len(unknown) < node.n:
            return Val(False, None, _flat(v for v in vals if v.value is False))
        return Val(None, _distinct(v.why for v in unknown), _flat(vals))

    def _CountTrue(self, node: ast.CountTrue, q: datetime) -> Val:
        true = [v for v in (self.evaluate(i, q) for i in node.items) if v.value is True]
        return Val(float(len(true)), None, _flat(true))

    def _Arith(self, node: ast.Arith, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        ev = _flat(vals)
        unknown = [v for v in vals if v.value is None]
        if unknown:
            return Val(None, _concat(v.why for v in unknown), ev)
        unit = self.type(node.items[0]).unit
        xs = [float(v.value) for v in vals]  # type: ignore[arg-type]
        if node.op in ("add", "sub", "min", "max"):
            xs = [self.scale(x, self.type(i).unit, unit) for x, i in zip(xs, node.items, strict=True)]
        if node.op == "div":
            if any(x == 0 for x in xs[1:]):
                return Val(None, "division by zero", ev)
            x = xs[0]
            for d in xs[1:]:
                x /= d
        elif node.op == "mul":
            x = math.prod(xs)
        else:
            x = {"add": sum, "sub": lambda v: v[0] - sum(v[1:]), "min": min, "max": max}[node.op](xs)
        return Val(rnd(x, 9), None, ev)

    def _Clip(self, node: ast.Clip, q: datetime) -> Val:
        v = self.evaluate(node.item, q)
        if v.value is None:
            return v
        x = float(v.value)
        if node.high is not None:
            x = min(x, node.high)
        if node.low is not None:
            x = max(x, node.low)
        return Val(x, v.why, v.ev)

    def _Coalesce(self, node: ast.Coalesce, q: datetime) -> Val:
        vals = [self.evaluate(i, q) for i in node.items]
        for v in vals:
            if v.value is not None:
                return v
        return Val(None, _concat(v.why for v in vals))

    def _UnknownUnless(self, node: ast.UnknownUnless, q: datetime) -> Val:
        v = self.evaluate(node.value, q)
        c = self.evaluate(node.condition, q)
        if c.value is True:
            return v
        why = _concat([node.reason, c.why]) if c.value is None else node.reason
        return Val(None, why, v.ev + c.ev)

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
        if bx == 0:
            return Val(math.inf if x > 0 else -math.inf if x < 0 else 0.0, None, ev)
        return Val(rnd((x - bx) / abs(bx) * 100, 6), None, ev)

    def anchored_at(self, node: ast.AtAnchor, t: datetime) -> datetime:
        at = shift(t, self.duration(node.offset))
        return end_of_day(at.date()) if node.whole_day else at

    def _AtAnchor(self, node: ast.AtAnchor, q: datetime) -> Val:
        name, off = node.anchor.select.name, self.duration(node.offset)
        a = self.anchor(node.anchor, q)
        if a is None:
            return Val(None, f"no {name} up to the date")
        at = self.anchored_at(node, a["occurred_at"])
        shifted = f"{name} + {off}" if not off.is_zero else name
        if at > q:
            late = (
                f"the day of the {shifted} ends after the date"
                if node.whole_day
                else f"{off} after the {name} is after the date"
            )
            return Val(None, late, (a["seq"],))
        inner = self.evaluate(node.expr, at)
        label = f"on the day of the {shifted}" if node.whole_day else f"at the {shifted}"
        why = f"{label} ({at:%Y-%m-%d}): {inner.why}" if inner.why else None
        return Val(inner.value, why, (a["seq"], *inner.ev))

    def _HeldFor(self, node: ast.HeldFor, q: datetime) -> Val:
        d = self.duration(node.duration)
        lo = shift(q, d, -1)
        moments = [lo, *(c for c in self.candidates(node.expr) if lo < c <= q)]
        vals = [self.evaluate(node.expr, m) for m in moments]
        ev = tuple(sorted({s for v in vals for s in v.ev}))
        if any(v.value is False for v in vals):
            return Val(False, None, ev)
        whys = sorted({v.why for v in vals if v.value is None and v.why})
        if any(v.value is None for v in vals):
            why = f"not known at every moment of the last {d}: " + "; ".join(whys) if whys else None
            return Val(None, why, ev)
        return Val(True, None, ev)

    # ---- episodes
    def episodes(self, spec: ast.Episodes, merged_across_gaps: bool = True) -> list[Episode]:
        """Episodes over the whole record, merged across gaps or raw (an open episode ends at FAR)."""
        key = (id(spec), merged_across_gaps)
        if key in self.ep_memo:
            return self.ep_memo[key]
        raw: list[tuple[datetime, int, datetime, tuple[int, ...]]] = []
        if spec.select is not None:
            for e in self.selected(spec.select):
                end = FAR if e["ended_at"] is None else self.span_end(e)
                raw.append((e["occurred_at"], e["seq"], end, (e["seq"],)))
        else:
            assert spec.when is not None
            moments = self.candidates(spec.when)
            vals = [self.evaluate(spec.when, m) for m in moments]
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
                raw.append((moments[i], 0, end, ev))
                i = j + 1
        raw.sort(key=lambda r: (r[0], r[1]))
        if not merged_across_gaps:
            episodes = [Episode(s, e, ev) for s, _, e, ev in raw]
            self.ep_memo[key] = episodes
            return episodes
        gap = self.duration(spec.merge_gap)
        merged: list[Episode] = []
        for s, _, e, ev in raw:
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
        inside = [ep for ep in self.episodes(node.episodes, merged_across_gaps=False) if ep.s <= q <= ep.e]
        return Val(bool(inside), None, tuple(s for ep in inside for s in ep.ev))

    def _EpisodeCount(self, node: ast.EpisodeCount, q: datetime) -> Val:
        w = node.window
        ref: datetime | None = q
        anchor_ev: tuple[int, ...] = ()
        if w.anchor is not None:
            a = self.anchor(w.anchor, q)
            if a is None:
                return Val(None, f"no {w.anchor.select.name} up to the date")
            ref, anchor_ev = a["occurred_at"], (a["seq"],)
        lo = shift(ref, self.duration(w.start)) if w.start is not None else None
        hi = shift(ref, self.duration(w.end)) if w.end is not None else None
        kept = []
        for ep in self.episodes(node.episodes):
            if ep.s <= q and self.in_window(ep.s, lo, hi, w):
                when = node.starting_when
                if when is None or self.evaluate(when, ep.s).value is True:
                    kept.append(ep)
        ev = anchor_ev + tuple(s for ep in kept for s in ep.ev)
        if hi is not None and hi > q:
            return Val(None, "the window ends after the date", ev)
        return Val(float(len(kept)), None, ev)

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
                        day = first + timedelta(days=k)
                        out |= {day, day + (c - first), day + (c - first) + EPS}
                    out.add(add_months(first.replace(day=1), 1))
        return out

    def _candidates(self, node: ast.Node) -> set[datetime]:
        times = lambda evs: [e["occurred_at"] for e in evs]  # noqa: E731
        if isinstance(node, ast.Const | ast.Param):
            return set()
        if isinstance(node, ast.RuleRef):
            return set(self.candidates(self.rules.rules[node.rule].define))
        if isinstance(node, ast.Latest | ast.Normal):
            return self._around(times(self.selected(node.select)), [None, self.duration(node.within)])
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
        out = set()
        for child in children(node):
            out |= set(self.candidates(child))
        return out


def children(node: ast.Node) -> list[ast.Node]:
    out: list[ast.Node] = []
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, ast.Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, ast.Node))
    return out
