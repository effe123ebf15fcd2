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
candidate; ``in_episode`` at one instant needs only the episode containing it, found from that
instant outwards (:meth:`Reference.episodes_at`).

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
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import chain
from typing import Any, Literal, NamedTuple

from timeline.engine import censored
from timeline.engine.compiler import CENSORED_AGGREGATES, DOSE_DECIMALS, reads_censored
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
_NEAR_MONTH_END = tuple(timedelta(days=k) for k in range(-3, 5))  # see Reference._around

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


class Val(NamedTuple):
    """A node's value at an instant: the value (None: unknown), the reason it is unknown, the
    evidence (seqs) and the note. A named tuple: the replay makes one per node and instant
    (~11k for the sJIA pack over the 10k cohort's patient with most events), at half the cost
    of a frozen dataclass."""

    value: bool | float | None
    why: str | None = None
    ev: tuple[int, ...] = ()
    note: str | None = None
    # a censored value (``latest`` of a lab's ``<5``): ``value`` is None (unknown: its exact
    # value is not known), these its qualifier and bound, which a comparison reading the
    # ``latest`` directly decides on when it can (timeline.engine.censored)
    qualifier: str | None = None
    bound: float | None = None


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


def _censored_why(value: str, what: str | None = None) -> str:
    """Why a censored value leaves a node unknown (the compiler's ``censored_why``)."""
    if what is None:
        return f"{value} is censored: its exact value is not known"
    return f"{value} is censored: {what} is not known"


def _censored_note(op: str, found: bool | None, left: str, right: str, unit: str) -> str:
    """A comparison's note when a side is censored: decided as usual (``<5 ≤ 10 mg/L``), or
    ``<5 vs 3 mg/L`` when undecided."""
    if found is None:
        return f"{left} vs {right}{unit}"
    return f"{left} {_holds(op, found)} {right}{unit}"


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


_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "max": max,
    "sum": math.fsum,
    "mean": lambda v: math.fsum(v) / len(v),
}


# Nodes whose value is a function of their operands' values alone (and of the node itself: its
# operator, threshold, units), never of the instant: see Reference.evaluate. A rule reference
# too (its rule's definition is its operand).
_PURE = (
    ast.Compare, ast.Logic, ast.Not, ast.AtLeast, ast.CountTrue,
    ast.Arith, ast.Clip, ast.Coalesce, ast.UnknownUnless, ast.PctChange,
)  # fmt: skip


# how far a node's value is a function of the instants of change :meth:`Reference.candidates`
# finds (see Reference._steadiness): every part of it, or all but its note
_STEADY, _VALUE_STEADY = 2, 1
# nodes whose value, reason, evidence and note are made from their operands' values, reasons and
# evidence, never from their notes
_BY_VALUES = (
    ast.Compare, ast.Logic, ast.AtLeast, ast.CountTrue, ast.Arith, ast.Clip, ast.Coalesce, ast.PctChange,
)  # fmt: skip


class _NodeState:
    """What :meth:`Reference.evaluate` keeps of a node: its method, its operands
    (:meth:`Reference._operands`), their values at its last evaluation (None before its second,
    and for a node without operands) and its value then; the instants of change around that
    evaluation (see :meth:`Reference._steady_at`: from ``since`` to before ``until`` the node
    has that value; none while ``since`` is after ``until``) and every instant its value may
    change at (None: not known yet; False: not steady)."""

    __slots__ = ("before", "changes", "method", "operands", "since", "until", "value")

    def __init__(
        self, method: Callable[[Any, datetime], Val], operands: tuple[ast.Node, ...] | None, value: Val
    ) -> None:
        self.method = method
        self.operands = operands
        self.before: list[Val] | None = None
        self.value = value
        self.since, self.until = datetime.max, datetime.min
        self.changes: list[datetime] | Literal[False] | None = None


def _same_val(a: Val, b: Val) -> bool:
    """Whether two values are the same in every respect: equal fields, and a value of the same
    type (true is not 1.0) and sign (-0.0 is not 0.0, as JSON writes them)."""
    if a != b:
        return False
    x, y = a.value, b.value
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    return not (x == 0 and math.copysign(1.0, x) != math.copysign(1.0, y))  # type: ignore[arg-type]


def _months_around(t: datetime, months: int) -> tuple[datetime, ...]:
    """The instants :meth:`Reference._around` adds for ``t`` moved by a number of calendar
    ``months``: where it lands and the microsecond after; near a month end, where the day is
    clipped, the midnights of the days around and the instants at ``t``'s time of day on them
    (q − months runs backwards at midnight there), and the first of the next month."""
    c = add_months(t, months)
    out = [c, c + EPS]
    if t.day >= 28:
        first = c.replace(hour=0, minute=0, second=0, microsecond=0)
        offset = c - first
        for k in _NEAR_MONTH_END:
            d0 = first + k
            out += (d0, d0 + offset, d0 + offset + EPS)
        out.append(add_months(first.replace(day=1), 1))
    return tuple(out)


def _run_episode(moments: Sequence[datetime], vals: Sequence[Val], i: int) -> Episode:
    """The episode of a condition true at ``moments[i]`` and the ``len(vals) - 1`` moments after
    it (``vals``: its values there, in order), and not true at the next moment, if any: it ends
    a microsecond before that one, else it is open (FAR); its evidence is every value's, and
    each moment's apart."""
    j = i + len(vals) - 1
    end = moments[j + 1] - EPS if j + 1 < len(moments) else FAR  # false from the next moment
    ev = tuple(sorted({s for v in vals for s in v.ev}))
    evq = tuple((moments[i + k], v.ev) for k, v in enumerate(vals))
    return Episode(moments[i], end, ev, evq)


def _by_kind_and_code(sel: ast.Selector) -> bool:
    """Whether the selector names kinds (and codes) and nothing else that :meth:`Reference.matches`
    checks: the events :meth:`Reference.positions` finds for it by kind (and code) are then its
    events, without matching each again."""
    return bool(sel.kinds) and not (
        sel.drugs
        or sel.not_drugs
        or sel.dose_unit is not None
        or sel.present is not None
        or sel.where
        or sel.any_of
    )


def _flat(vals: Iterable[Val]) -> tuple[int, ...]:
    return tuple(chain.from_iterable(v.ev for v in vals))


# ---- the evaluator ------------------------------------------------------------------------------


@dataclass
class Reference:
    """The rules of a :class:`RuleSet` over the current events of one patient. ``naive``:
    every lookup scans the whole event list (the benchmark's naive replay); otherwise each
    selector's events are found once and looked up by time."""

    rules: RuleSet
    events: Sequence[Event]
    naive: bool = False
    # False: only values, reasons and notes are asked for (`timeline state` written as a table,
    # which shows no evidence), so a ``held_for`` stops at the first moment of its window its
    # expression is false at, which decides its value and note: the evidence of such a node
    # (and of what reads it) is then that of the moments checked up to there, not all of them
    evidence: bool = True
    memo: dict[tuple[int, datetime], Val] = field(default_factory=dict)
    cp_memo: dict[int, list[datetime]] = field(default_factory=dict)
    cs_memo: dict[int, set[datetime]] = field(default_factory=dict)
    # the sorted lists of the sets of instants sorted so far, by the sets' sizes (see _in_order)
    sorted_memo: dict[int, list[tuple[set[datetime], list[datetime]]]] = field(default_factory=dict)
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
        # selectors that match the same events (a rule and its carried copies name the same
        # events) share them, found once: ``sel_memo`` is keyed by the selector's id, this by
        # what decides the events it matches (:meth:`matching`)
        self.sel_by_value: dict[tuple[tuple[Any, ...], str | None], tuple[list[Event], list[datetime]]] = {}
        self.matching_memo: dict[int, tuple[Any, ...]] = {}
        # each selector's field conditions' limits, in the field's unit (see matches)
        self.limits_memo: dict[int, tuple[float | bool, ...]] = {}
        self.end_memo: dict[tuple[int, str | None], list[datetime]] = {}
        self.methods: dict[type, Callable[[Any, datetime], Val]] = {}
        self.dur_memo: dict[int, Duration] = {}
        # an instant moved by a number of calendar months: what _around adds for it
        self.month_memo: dict[tuple[datetime, int], tuple[datetime, ...]] = {}
        self.thr_memo: dict[tuple[int, str | None], float | bool] = {}
        self._crossing: Callable[[ast.Compare], tuple[Crossing, ...] | None] | None = None
        self.rule_of: dict[str, tuple[ast.Node, Any]] = {}
        # the value of a leaf (latest, normal, an aggregate) by what it depends on (see _seen)
        self.leaf: dict[tuple[Any, ...], Val] = {}
        self.lasting_memo: dict[tuple[int, str | None], frozenset[int]] = {}
        self.single_memo: dict[tuple[str, tuple[str, ...]], bool] = {}
        # each node's last evaluation and what is needed to tell whether it holds (see evaluate)
        self.state: dict[int, _NodeState] = {}
        self.steady_memo: dict[int, int] = {}
        # what a node's evaluation needs at every instant and depends on the node alone (its
        # durations, units, threshold), found once per node: the replay evaluates a node at
        # hundreds of instants (held_for, a condition's episodes)
        self.plan: dict[int, Any] = {}
        # whether a node's value may be a censored value, kept as one (compiler.reads_censored)
        self.carry: dict[int, bool] = {}

    # -- entry points
    def rule(self, rule_id: str, q: datetime) -> Val:
        """A rule's value, in the unit its file declares."""
        found = self.rule_of.get(rule_id)
        if found is None:  # its definition and its conversion, found once per rule
            found = self.rule_of[rule_id] = (self.rules.rules[rule_id].define, self.rules.reported(rule_id))
        define, c = found
        v = self.evaluate(define, q)
        if c is not None and v.bound is not None:  # a censored value's bound, in the rule's unit
            return Val(None, v.why, v.ev, v.note, v.qualifier, rnd(c.apply(v.bound), 9))
        if c is None or v.value is None:
            return v
        return Val(rnd(c.apply(float(v.value)), 9), v.why, v.ev, v.note)

    def evaluate(self, node: ast.Node, q: datetime) -> Val:
        """``node``'s value at ``q``, once per node and instant (``memo``).

        A node is evaluated at hundreds of instants where ``held_for`` or a condition's episodes
        read it, and most of its values repeat the one before. So a value equal to the node's
        previous one (:func:`_same_val`) is that very object, and a node whose value is a
        function of its operands' values alone (:data:`_PURE`: logic, comparisons, arithmetic,
        rule references…) whose operands are the very objects of its previous evaluation gives
        that evaluation's value without computing it again: the same values, reasons, evidence
        and notes, at a fraction of the cost (leaves, and nodes that read the instant, are
        always computed, a ``latest``, ``normal``, aggregate and ``on_drug`` once per set of
        events it reads). A node whose instants of change are known (:meth:`steady`: those
        :meth:`candidates` found for a ``held_for`` or a condition's episodes that read it)
        keeps its value, without looking at its operands, from one of them to the next: at an
        instant between the same two as its previous evaluation's, that evaluation's value is
        its value. The naive replay computes every value."""
        nid = node.nid
        st = self.state.get(nid)
        if st is not None and st.since <= q < st.until:
            return st.value  # between the same two instants of change as its last evaluation
        key = (nid, q)
        found = self.memo.get(key)
        if found is not None:
            return found
        if st is None:  # its first evaluation (most nodes have but one): nothing to compare
            kind = type(node)
            method = self.methods.get(kind)
            if method is None:  # the method of each node class, looked up once
                method = self.methods[kind] = getattr(self, "_" + kind.__name__)
            found = self.memo[key] = method(node, q)
            if not self.naive:  # every value computed from the raw list, none taken from another
                st = self.state[nid] = _NodeState(method, self._operands(node), found)
                self._steady_at(node, st, q)
            return found
        operands = st.operands
        vals = None
        if operands is not None:
            vals = [self.evaluate(o, q) for o in operands]
            before = st.before
            if before is not None and all(map(operator.is_, vals, before)):
                found = self.memo[key] = st.value
                self._steady_at(node, st, q)
                return found
        found = st.method(node, q)
        last = st.value
        if found is not last and _same_val(found, last):
            found = last
        st.before = vals
        st.value = found
        self.memo[key] = found
        self._steady_at(node, st, q)
        return found

    def _steady_at(self, node: ast.Node, st: _NodeState, q: datetime) -> None:
        """Keep in ``st`` the instants of change of ``node`` around ``q``, where its value was
        just found (see :meth:`evaluate`): from the last one at or before ``q`` to the next one
        after it the node has that value. None kept while they are not known."""
        changes = st.changes
        if changes is None:  # not known yet: known once a held_for or episodes reading it looked
            if node.nid not in self.cs_memo:
                return
            changes = st.changes = self.candidates(node) if self.steady(node) else False
        if changes is False:
            return
        i = bisect_right(changes, q)
        st.since = changes[i - 1] if i else datetime.min
        st.until = changes[i] if i < len(changes) else datetime.max

    def steady(self, node: ast.Node) -> bool:
        """Whether ``node``'s value, reason, evidence and note change only at the instants
        :meth:`candidates` finds (see :meth:`_steadiness`)."""
        return self._steadiness(node) == _STEADY

    def _steadiness(self, node: ast.Node) -> int:
        """:data:`_STEADY` when ``node``'s value, reason, evidence and note change only at the
        instants :meth:`candidates` finds; :data:`_VALUE_STEADY` when all but its note do;
        else 0. ``age`` and ``time_since`` count days up at every midnight (only a comparison
        with a constant marks where that matters, and its note shows the count), and
        ``held_for``'s note names the first day of its window it was not true on, a day that
        moves with the instant: neither, nor what reads one, is steady — but for a comparison
        of two such counts in one unit, which only their anchor events change (its note shows
        the counts), and what reads only its value."""
        found = self.steady_memo.get(node.nid)
        if found is not None:
            return found
        if isinstance(node, ast.Age | ast.TimeSince | ast.HeldFor):
            found = 0
        elif isinstance(node, ast.RuleRef):
            found = self._steadiness(self.rules.rules[node.rule].define)
        elif isinstance(node, ast.Not):
            found = self._steadiness(node.item)
        elif isinstance(node, ast.UnknownUnless):
            value, condition = self._steadiness(node.value), self._steadiness(node.condition)
            found = 0 if not condition else value  # the note is the value's
        elif isinstance(node, _BY_VALUES):  # their notes are made from their operands' values
            left, right = (node.left, node.right) if isinstance(node, ast.Compare) else (None, None)
            if isinstance(left, ast.Age | ast.TimeSince) and isinstance(right, ast.Age | ast.TimeSince):
                found = _VALUE_STEADY if left.unit == right.unit else 0
            else:
                found = _STEADY if all(self._steadiness(c) for c in ast.children(node)) else 0
        else:
            parts = ast.children(node)
            if isinstance(node, ast.InEpisode | ast.EpisodeCount) and node.episodes.when is not None:
                parts.append(node.episodes.when)
            found = _STEADY if all(self._steadiness(p) == _STEADY for p in parts) else 0
        self.steady_memo[node.nid] = found
        return found

    def _operands(self, node: ast.Node) -> tuple[ast.Node, ...] | None:
        """The nodes whose values alone give ``node``'s (see :meth:`evaluate`; a constant or a
        parameter, which has one value throughout, is not one of them), or None when its value
        depends on the instant itself (a leaf, at_anchor, held_for, episodes)."""
        if isinstance(node, ast.RuleRef):
            return (self.rules.rules[node.rule].define,)
        if isinstance(node, _PURE):
            return tuple(c for c in ast.children(node) if not isinstance(c, ast.Const | ast.Param))
        return None

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
        for cond, limit in zip(sel.where, self.limits(sel), strict=True):
            v = e.get(cond.field)
            if v is None:
                return False
            qualifier = e.get("value_qualifier") if cond.field == "value" else None
            if qualifier is not None:  # a censored value matches when its whole range does
                assert not isinstance(limit, bool)
                found = censored.decide(
                    cond.op, censored.of(rnd(float(v), 9), qualifier), censored.of(float(limit), None)
                )
                if found is not True:
                    return False
            elif not CMP[cond.op](rnd(float(v), 9), limit):
                return False
        return not sel.any_of or any(self.matches(s, e) for s in sel.any_of)

    def limits(self, sel: ast.Selector) -> tuple[float | bool, ...]:
        """The limit of each of the selector's field conditions, in the unit of its field (a
        number or a boolean), found once per selector."""
        found = self.limits_memo.get(id(sel))
        if found is None:
            found = self.limits_memo[id(sel)] = tuple(
                self.threshold(cond.value, field_unit(sel, cond.field)) for cond in sel.where
            )
        return found

    def matching(self, sel: ast.Selector) -> tuple[Any, ...]:
        """What decides which events the selector matches (:meth:`matches`): all it names but its
        name and the words it was written in, each field condition as its field, operator and
        limit (a limit by its type too: true is not 1.0), and the same of each selector of its
        ``any_of``. Selectors equal in this match the same events: a rule's carried copies
        name the same events by selectors that differ only in the node of a parameter whose
        value is the same (the 10k cohort's patient with most events: fever_event, in 8
        copies of fever_free, each ~0.25 ms to find)."""
        found = self.matching_memo.get(id(sel))
        if found is None:
            conditions = tuple(
                (cond.field, cond.op, type(limit), limit)
                for cond, limit in zip(sel.where, self.limits(sel), strict=True)
            )
            found = self.matching_memo[id(sel)] = (
                sel.kinds, sel.codes, sel.drugs, sel.not_drugs, sel.dose_unit, sel.present, conditions,
                tuple(self.matching(s) for s in sel.any_of),
            )  # fmt: skip
        return found

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
            same = (self.matching(sel), fld)
            found = self.sel_by_value.get(same)
            if found is None:
                at = self.positions(sel)
                candidates = self.events if at is None else [self.events[i] for i in at]
                if at is not None and _by_kind_and_code(sel):  # those positions are its events
                    events = [e for e in candidates if fld is None or e.get(fld) is not None]
                else:
                    events = [
                        e
                        for e in candidates
                        if self.matches(sel, e) and (fld is None or e.get(fld) is not None)
                    ]
                found = self.sel_by_value[same] = (events, [e["occurred_at"] for e in events])
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
        events, stretch, picked = self.picked(sel, q, fld, lo, hi, w, spans)
        return events[picked[0] : picked[1]] if stretch else [events[i] for i in picked]

    def picked(
        self,
        sel: ast.Selector,
        q: datetime,
        fld: str | None,
        lo: datetime | None,
        hi: datetime | None,
        w: ast.Window,
        spans: bool,
    ) -> tuple[list[Event], bool, tuple[int, ...]]:
        """:meth:`between`'s events as positions in ``indexed(sel, fld)``'s: (events, True,
        (i0, i1)) for ``events[i0:i1]``, or (events, False, (i, j, ...)) for those positions,
        in order.

        With ``spans``, an event lasting to its end overlaps the window if it starts by ``hi``
        and ends from ``lo`` on. An event that ends as it starts (most: recorded without an end)
        overlaps it when it starts from ``lo`` on: those are a stretch found by bisection; only
        the events that end at another instant are each compared with ``lo``."""
        if not spans or lo is None:
            events, i0, i1 = self.stretch(sel, q, fld, lo, hi, w)
            return events, True, (i0, i1)
        events, _, i1 = self.stretch(sel, q, fld, None, hi, w)
        times = self.indexed(sel, fld)[1]
        ends = self.ends(sel, fld)
        inclusive = w.start_inclusive
        # events that end as they start overlap from the first starting at (or after) lo on
        k0 = (bisect_left if inclusive else bisect_right)(times, lo, 0, i1)
        others = self.lasting(sel, fld)
        if not others:
            return events, True, (k0, i1)
        early = [j for j in others if j < i1 and (ends[j] >= lo if inclusive else ends[j] > lo)]
        if not early and not others.intersection(range(k0, i1)):
            return events, True, (k0, i1)
        kept = set(range(k0, i1)) - others
        kept.update(early)
        return events, False, tuple(sorted(kept))

    def lasting(self, sel: ast.Selector, fld: str | None) -> frozenset[int]:
        """The positions of ``indexed(sel, fld)``'s events that end at another instant than
        they start (see :meth:`picked`)."""
        key = (id(sel), fld)
        found = self.lasting_memo.get(key)
        if found is None:
            times, ends = self.indexed(sel, fld)[1], self.ends(sel, fld)
            found = self.lasting_memo[key] = frozenset(
                i for i, (t, e) in enumerate(zip(times, ends, strict=True)) if t != e
            )
        return found

    def stretch(
        self,
        sel: ast.Selector,
        q: datetime,
        fld: str | None,
        lo: datetime | None,
        hi: datetime | None,
        w: ast.Window,
    ) -> tuple[list[Event], int, int]:
        """The selector's events visible at q inside the window [lo, hi] (each bound in or out
        as the window says), as ``events[i0:i1]`` of ``indexed(sel, fld)``'s: (events, i0, i1)."""
        events, times = self.indexed(sel, fld)
        i1 = bisect_right(times, q)
        if hi is not None:
            i1 = min(i1, (bisect_right if w.end_inclusive else bisect_left)(times, hi))
        if lo is None:
            return events, 0, i1
        i0 = (bisect_left if w.start_inclusive else bisect_right)(times, lo)
        return events, i0, max(i0, i1)

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

    def _leaf_value(
        self,
        node: ast.Latest | ast.Normal,
        q: datetime,
        fld: str,
        compute: Callable[[Any, datetime], Val],
    ) -> Val:
        """A ``latest`` or ``normal`` node's value at ``q``: ``compute``'s, once per state it
        depends on (:meth:`_seen`)."""
        seen = self._seen(node, q, fld)
        found = self.leaf.get(seen) if seen is not None else None
        if found is None:
            found = compute(node, q)
            if seen is not None:
                self.leaf[seen] = found
        return found

    def _seen(self, node: ast.Latest | ast.Normal, q: datetime, fld: str) -> tuple[Any, ...] | None:
        """What a ``latest`` or ``normal`` node's value at ``q`` depends on: the position of its
        latest event and whether that event is recent enough (None in the naive replay, which
        looks at nothing but the raw list)."""
        if self.naive:
            return None
        times = self.indexed(node.select, fld)[1]
        i = bisect_right(times, q)
        return (node.nid, i, i > 0 and times[i - 1] > shift(q, self.duration(node.within), -1))

    def _Latest(self, node: ast.Latest, q: datetime) -> Val:
        return self._leaf_value(node, q, node.field, self._latest)

    def _latest(self, node: ast.Latest, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, node.field)
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        x = float(e[node.field])
        # a dose carries no unit column: its unit is the one its selector fixes
        unit = field_unit(node.select, "dose") if node.field == "dose" else e["unit"]
        qualifier = e.get("value_qualifier") if node.field == "value" else None
        what = f"{name} {censored.shown(str(fmt(x)), qualifier)}" + (f" {unit}" if unit else "")
        note = f"{what} on {day(e['occurred_at'])}"
        if not e["occurred_at"] > shift(q, v, -1):
            return Val(None, self._stale(name, v, e), (e["seq"],), note)
        if qualifier is not None:
            return Val(None, _censored_why(note), (e["seq"],), note, qualifier, x)
        return Val(x, None, (e["seq"],), note)

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
        return self._leaf_value(node, q, "value", self._normal)

    def _normal(self, node: ast.Normal, q: datetime) -> Val:
        name, v = node.select.name, self.duration(node.within)
        e = self.latest(node.select, q, "value")
        if e is None:
            return Val(None, f"no {name} recorded up to the date")
        unit = field_unit(node.select, "value")
        upper = self.threshold(node.upper, unit) if node.upper is not None else None
        lower = self.threshold(node.lower, unit) if node.lower is not None else None
        x = float(e["value"])
        qualifier = e.get("value_qualifier")
        note = f"{name} {censored.shown(str(fmt(x)), qualifier)} {unit}"
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
        if qualifier is not None:  # normal only if the whole range is; not if none of it is
            r = censored.of(x, qualifier)
            below = True if hi is None else censored.decide("le", r, censored.of(float(hi), None))
            above = True if lo is None else censored.decide("ge", r, censored.of(float(lo), None))
            found = False if False in (below, above) else True if below and above else None
            why = (
                None
                if found is not None
                else _censored_why(
                    f"{name} {censored.shown(str(fmt(x)), qualifier)} {unit} on {day(e['occurred_at'])}"
                )
            )
            return Val(found, why, (e["seq"],), note)
        ok = (hi is None or x <= hi) and (lo is None or x >= lo)
        return Val(ok, None, (e["seq"],), note)

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
            note = f"{node.fn} of {name}: 0 event(s) in the window"
            return Val(None, f"no {w.anchor.select.name} recorded up to the date", note=note)
        bounds = self.plan.get(node.nid)
        if bounds is None:
            bounds = self.plan[node.nid] = (
                self.duration(w.start) if w.start is not None else None,
                self.duration(w.end) if w.end is not None else None,
            )
        start, end = bounds
        lo = shift(ref, start) if start is not None else None
        hi = shift(ref, end) if end is not None else None
        fld = None if node.fn in ("count", "exists") else node.field
        if self.naive:
            found = [
                e
                for e in self.selected(node.select, q, fld)
                if self.in_window(e["occurred_at"], lo, hi, w, self.span_end(e) if node.spans else None)
            ]
        else:
            # the value is that of the window's events (with the anchor event, and whether the
            # window ends after q), found once per set of events
            events, stretch, picked = self.picked(node.select, q, fld, lo, hi, w, node.spans)
            seen = (node.nid, anchor_ev, stretch, picked, hi is not None and hi > q)
            value = self.leaf.get(seen)
            if value is None:
                found = events[picked[0] : picked[1]] if stretch else [events[i] for i in picked]
                value = self.leaf[seen] = self._aggregate(node, q, found, anchor_ev, hi)
            return value
        return self._aggregate(node, q, found, anchor_ev, hi)

    def _aggregate(
        self,
        node: ast.Aggregate,
        q: datetime,
        found: list[Event],
        anchor_ev: tuple[int, ...],
        hi: datetime | None,
    ) -> Val:
        name = node.select.name
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
        censored_values = node.field == "value" and not node.spans
        cut = next((e for e in found if censored_values and e.get("value_qualifier") is not None), None)

        def why_of(e: Event) -> str:
            unit = f" {e['unit']}" if e["unit"] else ""
            what = f"{name} {censored.shown(str(fmt(float(e['value']))), e['value_qualifier'])}{unit}"
            return _censored_why(f"{what} on {day(e['occurred_at'])}", f"the {node.fn} of the window")

        if node.fn in ("first", "last"):
            # the value picked by time; censored or not, the others do not matter
            if node.fn == "first":
                t0 = found[0]["occurred_at"]
                e = [e for e in found if e["occurred_at"] == t0][-1]
            else:
                e = found[-1]
            qualifier = e.get("value_qualifier") if censored_values else None
            if qualifier is not None:
                return Val(None, why_of(e), ev, note, qualifier, float(e["value"]))
            return Val(float(e[node.field]), None, ev, note)
        if cut is not None and node.fn in CENSORED_AGGREGATES:  # min, max: the extreme of the ranges
            x, qualifier = censored.extreme(
                node.fn, [(float(e["value"]), e.get("value_qualifier")) for e in found]
            )
            if qualifier is None:
                return Val(x, None, ev, note)
            return Val(None, why_of(cut), ev, note, qualifier, x)
        if cut is not None:  # mean, sum: a censored value has no exact value to add
            return Val(None, why_of(cut), ev, note)
        x = _AGGREGATES[node.fn]([float(e[node.field]) for e in found])
        return Val(x, None, ev, note)

    def _OnDrug(self, node: ast.OnDrug, q: datetime) -> Val:
        """On a drug from a start or dose change until its next start, dose change, stop or
        discontinuation; a single dose (``frequency: once``) makes it on for the rest of its
        day, neither starting nor ending a course."""
        seen = None
        if not self.naive:
            # its value depends on how many of each drug's records are visible at q (and, where
            # the drug has a single dose, on q's day): found once per such state
            seen = (node.nid, *self._med_counts(node.drugs, q, node.except_routes))
            found = self.leaf.get(seen)
            if found is not None:
                return found
        found = self._on_drug(node, q)
        if seen is not None:
            self.leaf[seen] = found
        return found

    def _med_counts(self, drugs: Sequence[str], q: datetime, except_routes: tuple[str, ...]) -> list[Any]:
        """How many of each drug's records (:meth:`medications`) are visible at q, and q's day
        if any of them is a single dose."""
        out: list[Any] = []
        single = False
        for drug in drugs:
            key = (drug, except_routes)
            if key not in self.med_memo:
                self.medications(drug, q, except_routes)
            meds, times = self.med_memo[key]
            out.append(bisect_right(times, q))
            if key not in self.single_memo:
                self.single_memo[key] = any(single_dose(m) for m in meds)
            single = single or self.single_memo[key]
        if single:
            out.append(q.date())
        return out

    def _on_drug(self, node: ast.OnDrug, q: datetime) -> Val:
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
        found = self.plan.get(node.nid)
        if found is None:
            left_t = self.type(node.left)
            words = display_unit(left_t.unit)
            # a censored value is compared only where the operand keeps it (reads_censored)
            carry = (
                reads_censored(node.left, self.rules, self.carry),
                reads_censored(node.right, self.rules, self.carry),
            )
            found = self.plan[node.nid] = (left_t, f" {words}" if words else "", carry)
        left_t, shown, (left_carries, right_carries) = found
        left = self.evaluate(node.left, q)
        if left_t.kind == "bool":
            right = self.evaluate(node.right, q)
            value = (
                None if left.value is None or right.value is None else CMP[node.op](left.value, right.value)
            )
            return Val(value, _concat([left.why, right.why]), left.ev + right.ev)
        left_q = left.qualifier if left_carries else None
        if isinstance(node.right, ast.Const | ast.Param):  # a literal (see ``literal``)
            rhs = self.threshold(node.right, left_t.unit)
            if left_q is not None and left.bound is not None:
                lx = rnd(left.bound, 9)
                found = censored.decide(node.op, censored.of(lx, left_q), censored.of(float(rhs), None))
                text = censored.shown(str(fmt(lx)), left_q)
                note = _censored_note(node.op, found, text, str(fmt(float(rhs))), shown)
                return Val(found, left.why if found is None else None, left.ev, note)
            if left.value is None:
                return Val(None, left.why, left.ev)
            value = CMP[node.op](rnd(float(left.value), 9), rhs)
            note = f"{fmt(float(left.value))} {_holds(node.op, value)} {fmt(float(rhs))}{shown}"
            return Val(value, left.why, left.ev, note)
        right = self.evaluate(node.right, q)
        right_q = right.qualifier if right_carries else None
        if (left_q is not None and left.bound is not None) or (
            right_q is not None and right.bound is not None
        ):
            sides: list[tuple[float, str | None] | None] = []
            for val, qual, unit in (
                (left, left_q, left_t.unit),
                (right, right_q, self.type(node.right).unit),
            ):
                x = val.bound if qual is not None else val.value
                sides.append(None if x is None else (rnd(self.scale(float(x), unit, left_t.unit), 9), qual))
            why = _concat([left.why, right.why])
            if sides[0] is None or sides[1] is None:
                return Val(None, why, left.ev + right.ev)
            (lx, lq), (rx, rq) = sides[0], sides[1]
            found = censored.decide(node.op, censored.of(lx, lq), censored.of(rx, rq))
            note = _censored_note(
                node.op, found, censored.shown(str(fmt(lx)), lq), censored.shown(str(fmt(rx)), rq), shown
            )
            return Val(found, why if found is None else None, left.ev + right.ev, note)
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
        evaluate = self.evaluate
        vals = [evaluate(i, q) for i in node.items]
        decisive = node.op != "all"  # the value that decides: false for all, true for any
        hits = []
        unknown = []
        nt = 0
        for v in vals:
            x = v.value
            if x is None:
                unknown.append(v)
            else:
                if x is True:
                    nt += 1
                if x is decisive:
                    hits.append(v)
        note = f"{nt} of {len(vals)} true" + (f", {len(unknown)} unknown" if unknown else "")  # _counted
        if hits:
            return Val(decisive, None, _flat(hits), note)
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
        if node.op in ("min", "max") and reads_censored(node, self.rules, self.carry):
            return self._extreme(node, vals, xs, ev)
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

    def _extreme(self, node: ast.Arith, vals: list[Val], xs: list[float | None], ev: tuple[int, ...]) -> Val:
        """``min_of`` / ``max_of`` whose operands may be censored values (``xs``: the exact
        values in the first operand's unit): the extreme of their ranges
        (:func:`censored.extreme`), exact where no censored value moves it (max of ``<5`` and 8
        is 8), else a bound and qualifier, its reason the first censored operand's (it names
        the value); unknown where an operand is unknown and not censored, with the reasons of
        every operand without a value, as any arithmetic (the compiler's ``_extreme``)."""
        unit = self.type(node.items[0]).unit
        ranges: list[tuple[float, str | None] | None] = []
        for v, x, item in zip(vals, xs, node.items, strict=True):
            if (
                v.qualifier is not None
                and v.bound is not None
                and reads_censored(item, self.rules, self.carry)
            ):
                ranges.append((self.scale(v.bound, self.type(item).unit, unit), v.qualifier))
            else:
                ranges.append(None if x is None else (x, None))
        shown = [("?" if r is None else censored.shown(str(fmt(r[0])), r[1])) for r in ranges]
        note = f"{node.op}(" + ", ".join(shown) + ")"
        known = [r for r in ranges if r is not None]
        if len(known) < len(ranges):
            return Val(None, _concat(v.why for v in vals if v.value is None), ev, note)
        x, qualifier = censored.extreme(node.op, known)
        if qualifier is None:
            return Val(rnd(x, 9), None, ev, note)
        first = next(v for v, r in zip(vals, ranges, strict=True) if r is not None and r[1] is not None)
        return Val(None, first.why, ev, note, qualifier, rnd(x, 9))

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
        for v, item in zip(vals, node.items, strict=True):
            if v.value is not None:
                return Val(v.value, v.why, v.ev)
            # a censored value is a value, only not an exact one: taken with its range
            if v.qualifier is not None and reads_censored(item, self.rules, self.carry):
                return Val(None, v.why, v.ev, None, v.qualifier, v.bound)
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
        if inner.qualifier is not None and reads_censored(node.expr, self.rules, self.carry):
            return Val(None, why, (a["seq"], *inner.ev), note, inner.qualifier, inner.bound)
        return Val(inner.value, why, (a["seq"], *inner.ev), note)

    def _HeldFor(self, node: ast.HeldFor, q: datetime) -> Val:
        d = self.duration(node.duration)
        lo = shift(q, d, -1)
        inner = self.candidates(node.expr)  # sorted: those in (lo, q]
        moments = [lo, *inner[bisect_right(inner, lo) : bisect_right(inner, q)]]
        if self.evidence:
            vals = [self.evaluate(node.expr, m) for m in moments]
        else:  # the first false moment (in order) gives the value and the note: no more needed
            vals = []
            for m in moments:
                vals.append(self.evaluate(node.expr, m))
                if vals[-1].value is False:
                    break
            moments = moments[: len(vals)]
        ev = tuple(sorted(set(chain.from_iterable(v.ev for v in vals))))
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
            inner = self.candidates(spec.when)  # sorted: those after ORIGIN
            moments = [ORIGIN, *inner[bisect_right(inner, ORIGIN) :]]
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
                ep = _run_episode(moments, vals[i : j + 1], i)
                raw.append((ep.s, 0, ep.e, ep.ev, ep.evq))
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

    def episodes_at(self, spec: ast.Episodes, q: datetime) -> list[Episode]:
        """The raw episodes (not merged across gaps) that contain ``q``: equal to those of
        ``episodes(spec, False, q)`` with ``s <= q <= e``. A condition's episode (the naive
        replay, the tests' oracle, finds it as before) is found from ``q`` outwards rather than
        from ``ORIGIN``: the condition at the last of its instants of change at or before
        ``q``; if it is true there, back to the first of the run of instants it is true at
        (the episode's start) and on to the first after ``q`` it is not (its end). So a
        condition false at ``q`` (most often) costs one evaluation, not one at every instant of
        change of the record up to ``q`` (a `state` of the 10k cohort's patient with most
        events: ~0.01 s, the MAS criteria at each of their 278 instants)."""
        when = spec.when
        if when is None or self.naive:  # recorded episodes cost nothing to find
            return [ep for ep in self.episodes(spec, False, q) if ep.s <= q <= ep.e]
        key = (id(spec), False, q)
        found = self.ep_memo.get(key)
        if found is not None:  # the whole record's episodes up to q, already found
            return [ep for ep in found if ep.s <= q <= ep.e]
        inner = self.candidates(when)  # sorted: those after ORIGIN
        first = bisect_right(inner, ORIGIN)
        moments = [ORIGIN, *inner[first:]]
        k = bisect_right(moments, q) - 1  # the last moment at or before q
        if k < 0 or self.evaluate(when, moments[k]).value is not True:
            return []
        i = k
        while i > 0 and self.evaluate(when, moments[i - 1]).value is True:
            i -= 1
        j = k
        while j + 1 < len(moments) and self.evaluate(when, moments[j + 1]).value is True:
            j += 1
        # the values of the run, each evaluated once above (memo)
        return [_run_episode(moments, [self.evaluate(when, moments[m]) for m in range(i, j + 1)], i)]

    def _InEpisode(self, node: ast.InEpisode, q: datetime) -> Val:
        # raw intervals: bridging a gap would need the next episode, after q
        inside = self.episodes_at(node.episodes, q)
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
        """A superset of the instants at which ``node``'s value or evidence can change, in order."""
        found = self.cp_memo.get(node.nid)
        if found is None:
            # a rule reference's are its rule's, a ``not``'s its operand's: that list, not
            # another sorted copy (the steady nodes of a held_for each ask for theirs)
            if isinstance(node, ast.RuleRef):
                found = self.candidates(self.rules.rules[node.rule].define)
            elif isinstance(node, ast.Not):
                found = self.candidates(node.item)
            else:
                found = self._in_order(self.candidate_set(node))
            self.cp_memo[node.nid] = found
        return found

    def _in_order(self, instants: set[datetime]) -> list[datetime]:
        """``instants`` sorted, once per set of them: a set equal to one sorted before (a rule's
        carried copies, a comparison of a leaf with a constant: the leaf's instants) takes that
        list (comparing two sets costs a fraction of sorting one)."""
        alike = self.sorted_memo.setdefault(len(instants), [])
        for known, ordered in alike:
            if known is instants or known == instants:
                return ordered
        ordered = sorted(instants)
        alike.append((instants, ordered))
        return ordered

    def candidate_set(self, node: ast.Node) -> set[datetime]:
        """:meth:`candidates` as a set (a node's are the union of its parts': only the nodes whose
        instants are examined in order sort theirs). Never changed once found: a node whose
        instants are one part's alone has that very set (a rule reference its rule's)."""
        found = self.cs_memo.get(node.nid)
        if found is None:
            found = self.cs_memo[node.nid] = self._candidates(node)
        return found

    def _around(self, base: Iterable[datetime], shifts: Sequence[Duration | None]) -> set[datetime]:
        out: set[datetime] = set()
        times = {t for t in base if t < FAR}  # many events share an instant (a visit's labs)
        for d in shifts:
            if d is None:
                out.update(times)
                out.update([t + EPS for t in times])
                continue
            step = d.exact
            if step is not None:  # hours, days, weeks: every instant moved alike (``shift``)
                moved = [t + step for t in times]
                out.update(moved)
                out.update([c + EPS for c in moved])
                continue
            # months and years, on the calendar: the same instants moved by the same months
            # are met again and again (a visit's labs, findings and assessments, each a
            # selector; a rule's carried copies), so each instant's are found once
            months = d.amount * (12 if d.unit == "year" else 1)
            memo = self.month_memo
            for t in times:
                found = memo.get((t, months))
                if found is None:
                    found = memo[t, months] = _months_around(t, months)
                out.update(found)
        return out

    def _candidates(self, node: ast.Node) -> set[datetime]:
        def times(evs: Iterable[Event]) -> list[datetime]:
            return [e["occurred_at"] for e in evs]

        if isinstance(node, ast.Const | ast.Param):
            return set()
        if isinstance(node, ast.RuleRef):
            return self.candidate_set(self.rules.rules[node.rule].define)  # that set (see candidate_set)
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
                out.update(self.candidate_set(node.starting_when))
            return out
        if isinstance(node, ast.OnDrug | ast.DailyDose):
            drugs = node.drugs if isinstance(node, ast.OnDrug) else (node.drug,)
            # each drug's events (drug_at; the naive replay scans every event)
            of_drugs = (
                [e for e in self.events if e["drug"] in drugs]
                if self.naive
                else [self.events[i] for d in dict.fromkeys(drugs) for i in self.drug_at.get(d, ())]
            )
            out = self._around(times(of_drugs), [None])
            if isinstance(node, ast.OnDrug):  # a single dose is on until its day ends
                ends = (end_of_day(e["occurred_at"].date()) for e in of_drugs if single_dose(e))
                out |= self._around(ends, [None])
            if isinstance(node, ast.DailyDose):
                weights = (
                    times(e for e in self.events if e["kind"] == "weight")
                    if self.naive
                    else [self.events[i]["occurred_at"] for i in self.kind_at.get("weight", ())]
                )
                out |= self._around(weights, [None, self.duration(node.weight_within)])
            return out
        if isinstance(node, ast.AtAnchor):
            anchors = times(self.selected(node.anchor.select))
            out = self._around(anchors, [None, self.duration(node.offset)])
            if node.whole_day:
                out |= self._around([self.anchored_at(node, t) for t in anchors], [None])
            return out
        if isinstance(node, ast.HeldFor):
            inner = self.candidate_set(node.expr)
            return self._around(inner, [None, self.duration(node.duration)])
        if isinstance(node, ast.InEpisode):
            eps = self.episodes(node.episodes, merged_across_gaps=False)
            out = self._around([ep.s for ep in eps] + [ep.e for ep in eps], [None])
            if node.episodes.when is not None:
                out.update(self.candidate_set(node.episodes.when))
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
        parts = [part for part in map(self.candidate_set, ast.children(node)) if part]
        if not out and len(parts) == 1:
            return parts[0]  # that set (see candidate_set): a leaf compared with a constant, a not
        for part in parts:
            out.update(part)
        return out
