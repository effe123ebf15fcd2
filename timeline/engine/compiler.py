"""Rule trees → DuckDB SQL evaluated for many (patient, moment) points at once.

Every node compiles, for a given *points* relation ``(patient_id, q)``, to a CTE with the
uniform columns::

    patient_id, q, b BOOLEAN, x DOUBLE, why VARCHAR, ev BIGINT[], lo TIMESTAMP, hi TIMESTAMP, note VARCHAR

``b`` (booleans) or ``x`` (numbers) is the value, NULL meaning unknown; ``why`` says why it is
unknown; ``ev`` lists the sequence numbers of the exact event versions used; ``lo``/``hi`` are
the bounds of the window searched; ``note`` is a short human account of the comparison made.
``q`` is an instant: events with ``occurred_at <= q`` are visible. A query for a date uses the
last microsecond of that day.

Nodes that need the value of a subtree at other moments (baselines, persistence, episodes)
compile that subtree over a derived points relation. Each node also compiles to the set of its
*change points* per patient — the only instants at which its value can change — from which
``held_for`` and ``timeline history`` evaluate exactly, never by sampling days.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timeline import codes
from timeline.engine import censored
from timeline.engine.crossings import anchor_of, crossings
from timeline.errors import TimelineError
from timeline.language import ast
from timeline.language.durations import Duration
from timeline.language.loader import RuleSet, field_unit, walk
from timeline.units import Conversion, conversion, display_unit

COLUMNS = "patient_id, q, b, x, why, ev, lo, hi, note"
EMPTY = "[]::BIGINT[]"
_EPS = "INTERVAL 1 MICROSECOND"
# the last instant an event lasts, from its ended_at: a date-only end covers that whole day
_END = f"CASE WHEN ended_precision = 'day' THEN ended_at + INTERVAL '1 day' - {_EPS} ELSE ended_at END"
FAR = "TIMESTAMP '9999-12-31 00:00:00'"
# Before every change point of any patient: a stepwise rule's value from here to its first
# change point is the value it has before anything was recorded (see Compiler.steps).
STEP_ORIGIN = "TIMESTAMP '0001-01-01 00:00:00'"
# Before every change point (events start in 1900; no duration is longer than 200 years): a
# condition's episodes are found from its value here on, so one that holds before anything
# happens (a constant, "no fever yet") has an episode from the start of the record.
ORIGIN = "TIMESTAMP '1000-01-01 00:00:00'"
# The event columns rules can read (selectors, fields, units, episodes): the engine's copy of
# the current timeline carries these and leaves hashes, provenance and notes behind. Events of
# one instant are ordered by ``asserted_seq`` (the store's ASSERTED_SEQ: the seq of the
# event's assertion, which a correction keeps), never by ``seq`` (the version's, which a
# correction would move past every other event at that instant); ``seq`` names the version
# used in the evidence.
ENGINE_COLUMNS = (
    "patient_id", "seq", "asserted_seq", "kind", "occurred_at", "ended_at", "ended_precision", "code", "value",
    "value_qualifier", "unit",
    "ref_low", "ref_high", "orig_value", "orig_unit", "present", "drug", "dose", "dose_unit", "frequency",
    "active_joints", "limited_joints", "grade",
)  # fmt: skip


def engine_columns(rules: RuleSet) -> tuple[str, ...]:
    """ENGINE_COLUMNS, and ``route`` when a rule reads it (``on_drug`` with ``except_routes``):
    the engine's copy of the events holds only columns some rule reads."""
    for rule in rules.rules.values():
        if any(isinstance(n, ast.OnDrug) and n.except_routes for n in walk(rule.define)):
            return (*ENGINE_COLUMNS, "route")
    return ENGINE_COLUMNS


class Unsupported(TimelineError):
    """A construct the compiler cannot translate (reported by name, never silently)."""


# A daily dose keeps 12 decimals: 4 mg/kg every 4 weeks is 0.142857142857 mg/kg/d, which times
# 28 d is 4 mg/kg once a comparison rounds it to 9 decimals (at 6 decimals it was 3.999996,
# below a "≥ 4 mg/kg" at exactly 4). The two engines agree to the 9 decimals every comparison
# reads; in the 12th, Python's and DuckDB's rounding of a dose of hundreds may differ.
DOSE_DECIMALS = 12


# a medication event that is a single dose, not a course (README, "Frequencies")
_SINGLE = "(kind IN ('medication_start', 'medication_dose_change') AND frequency IS NOT DISTINCT FROM 'once')"


def counts_compared(node: ast.Node) -> bool:
    """Whether ``node`` compares two counts of days in one unit (``age`` or ``time_since``,
    e.g. "the last CRP after the first anakinra dose": ``lt: [time_since last CRP, time_since
    first dose]``). Each count is the whole days from its anchor's date to the date of q,
    divided by one per-unit length (a division that keeps the order of whole days; comparisons
    round to 9 digits, far finer than 1/365.25 of a unit between two whole days), so the two
    differ by the days between the anchors' dates whatever q is: the comparison changes only where an anchor event appears or moves, which
    are change points of both counts — a step, though each count grows."""
    if not isinstance(node, ast.Compare):
        return False
    left, right = node.left, node.right
    return (
        isinstance(left, ast.Age | ast.TimeSince)
        and isinstance(right, ast.Age | ast.TimeSince)
        and left.unit == right.unit
    )


def reads_censored(node: ast.Node, rules: RuleSet, memo: dict[int, bool] | None = None) -> bool:
    """Whether a node's value may be a censored value, kept as one: its relation carries ``cq``
    and ``cx``, a censored value's qualifier and bound (its ``x`` is NULL: the exact value is
    not known), which a comparison reading the node decides on where it can. A ``latest`` of
    ``value``; ``first``, ``last``, ``min`` and ``max`` of a window's values (see
    :func:`timeline.engine.censored.extreme`); and, where what they pass on may be one, a rule
    reference (the rule's value), ``at_anchor`` (its expression's), ``coalesce`` (the
    first item with a value) and ``min_of`` / ``max_of`` (the extreme of the operands, as
    ``min`` / ``max``). Anything else over a censored value (other arithmetic, ``clip``,
    ``pct_change``, ``mean``, ``sum``) is unknown. ``memo``: answers by node id."""
    if memo is not None and node.nid in memo:
        return memo[node.nid]
    if isinstance(node, ast.Latest):
        found = node.field == "value"
    elif isinstance(node, ast.Aggregate):
        found = node.field == "value" and node.fn in CENSORED_AGGREGATES and not node.spans
    elif isinstance(node, ast.RuleRef):
        found = reads_censored(rules.rules[node.rule].define, rules, memo)
    elif isinstance(node, ast.AtAnchor):
        found = reads_censored(node.expr, rules, memo)
    elif isinstance(node, ast.Coalesce):
        found = any(reads_censored(i, rules, memo) for i in node.items)
    elif isinstance(node, ast.Arith) and node.op in ("min", "max"):
        # min_of, max_of: the extreme of the operands' ranges, as min and max of a window's
        found = any(reads_censored(i, rules, memo) for i in node.items)
    else:
        found = False
    if memo is not None:
        memo[node.nid] = found
    return found


# aggregates whose value is one of the window's values (first, last) or an extreme of them
# (min, max): over censored values, still a value or a range (timeline.engine.censored.extreme)
CENSORED_AGGREGATES = ("first", "last", "min", "max")


def censored_why(value: str, what: str | None = None) -> str:
    """SQL: why the censored value described by the SQL text ``value`` leaves a node unknown
    (the replay's ``_censored_why``)."""
    if what is None:
        return f"{value} || ' is censored: its exact value is not known'"
    return f"{value} || {q_(f' is censored: {what} is not known')}"


def q_(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _clauses(whys: str) -> str:
    """SQL: the reasons of the list ``whys`` as one text, each clause ("; "-separated) once,
    in sorted order, or NULL: the moments of a window repeat most of each other's clauses."""
    return f"nullif(array_to_string(list_sort(list_distinct(flatten(list_transform(list_filter({whys}, lambda w: w IS NOT NULL), lambda w: string_split(w, '; '))))), '; '), '')"


def _holds(op: str, test: str) -> str:
    """SQL for ' SYMBOL ' of what holds between a comparison's two numbers (``ast.SHOWN``):
    the operator when ``test`` is true, its opposite when false."""
    yes, no = ast.SHOWN[op], ast.SHOWN[ast.OPPOSITE[op]]
    return f"CASE WHEN {test} THEN ' {yes} ' ELSE ' {no} ' END"


def _num(value: float) -> str:
    return repr(float(value)) if value == value else "'nan'::DOUBLE"


@dataclass
class Compiled:
    """CTEs in dependency order and the CTE name of every (node, points) compiled."""

    ctes: list[tuple[str, str]] = field(default_factory=list)
    names: dict[tuple[int, str], str] = field(default_factory=dict)
    cp_names: dict[int, str] = field(default_factory=dict)

    def replace(self, name: str, sql: str) -> None:
        """A relation's SQL, changed before anything was run (a selector learning the columns
        of a new reader)."""
        i = next(i for i, (n, _) in enumerate(self.ctes) if n == name)
        self.ctes[i] = (name, sql)

    def with_sql(self) -> str:
        return "WITH " + ",\n".join(
            f"{n} AS MATERIALIZED ({s})" if n.startswith("ev") else f"{n} AS ({s})" for n, s in self.ctes
        )


class Compiler:
    """Compiles rules of a :class:`RuleSet` over the base points relation ``pts``."""

    def __init__(self, rules: RuleSet, events_sql: str, evidence: bool = True, dense: bool = False) -> None:
        """``evidence=False`` compiles for values and unknown reasons only (cohort runs,
        histories): nodes whose evidence costs more than their value (``held_for``) then
        take a cheaper plan, and leave ``ev`` empty and ``note`` NULL. ``dense``: the
        points are every change point of each patient's timeline (histories), not a few per
        patient (cohort runs), which changes the cheaper plan of ``held_for``."""
        self.rules = rules
        self.evidence = evidence
        self.dense = dense
        self.out = Compiled()
        self.counter = 0
        self.selectors: dict[str, str] = {}
        self.seen: dict[str, str] = {}
        # (node id, points) → (anchor CTE, the instant it evaluates at) / derived points CTEs,
        # for explanations
        self.anchored: dict[tuple[int, str], tuple[str, str]] = {}
        self.held: dict[tuple[int, str], tuple[str, str]] = {}
        self.converted: dict[tuple[str, str], str] = {}  # (rule, relation) → in its declared unit
        self._cp_memo: dict[int, list[str]] = {}
        self.fields: dict[str, set[str]] = {}
        self._stepwise: dict[str, bool] = {}
        self.crossing = crossings(rules)
        self.steps_points: dict[str, str] = {}
        # relations that carry a censored value's qualifier and bound (cq, cx): a ``latest`` of
        # a ``value``, and a rule's conversion of one (for explanations)
        self.censored_relations: set[str] = set()
        self._carries: dict[int, bool] = {}
        self.add("ev", events_sql)

    # ---- plumbing
    def add(self, name: str, sql: str) -> str:
        """Add a CTE, or reuse an identical one: identical children make identical parents,
        so shared subtrees (a rule used by several others) are computed once."""
        key = " ".join(sql.split())
        if key in self.seen:
            return self.seen[key]
        self.seen[key] = name
        self.out.ctes.append((name, sql))
        return name

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def note(self, expr: str) -> str:
        """A node's ``note`` column: the expression, or NULL when compiling for values."""
        return expr if self.evidence else "NULL"

    def evs(self, expr: str) -> str:
        """A node's ``ev`` column: the expression, or the empty list when compiling for values."""
        return expr if self.evidence else EMPTY

    def rule(self, rule_id: str, points: str = "pts") -> str:
        """A rule's relation at ``points``: its definition's, in the rule's declared unit."""
        name = self.node(self.rules.rules[rule_id].define, points)
        c = self.rules.reported(rule_id)
        if c is None:
            return name
        key = (f"reported:{rule_id}", name)
        if key not in self.converted:
            x = f"round({c.sql('x')}, 9)"
            # a censored value's bound too, where the rule is one (see censored_root)
            bound = f", cq, round({c.sql('cx')}, 9) AS cx" if self.censored_root(rule_id) else ""
            self.converted[key] = self.add(
                self.fresh("n"),
                f"SELECT patient_id, q, b, {x} AS x, why, ev, lo, hi, note{bound} FROM {name}",
            )
            if bound:
                self.censored_relations.add(self.converted[key])
        return self.converted[key]

    def censored_root(self, rule_id: str) -> bool:
        """Whether a rule's value may be a censored value: its definition keeps one
        (:func:`reads_censored`: a ``latest`` of a ``value``, a ``max_of`` over one, …), so its
        relation (from :meth:`rule`) carries ``cq`` and ``cx``, which a state shows as
        ``<5 mg/L``."""
        return self.carries(self.rules.rules[rule_id].define)

    def carries(self, node: ast.Node) -> bool:
        """Whether ``node``'s relation carries a censored value (:func:`reads_censored`)."""
        return reads_censored(node, self.rules, self._carries)

    def rule_at(self, rule_id: str, points: str) -> str:
        """A rule's value at ``points``: evaluated there, or — for dense points (histories) —
        looked up in its evaluation at its own change points (see :meth:`stepwise`)."""
        if not (self.dense and self.stepwise(rule_id)):
            return self.rule(rule_id, points)
        steps = self.steps(rule_id)
        if points == self.steps_points[rule_id]:
            return steps
        # An instant before STEP_ORIGIN (a held_for evaluated at another rule's STEP_ORIGIN looks
        # back from it) has the value at STEP_ORIGIN: no change point lies before either.
        bound = ", f.cq, f.cx" if self.censored_root(rule_id) else ""  # see censored_root
        found = f"""SELECT p.patient_id, p.q, f.b, f.x, f.why, f.ev, f.lo, f.hi, f.note{bound}
                FROM {points} p ASOF LEFT JOIN {steps} f
                  ON f.patient_id = p.patient_id AND f.q <= greatest(p.q, {STEP_ORIGIN})"""
        kind = self.rules.rules[rule_id].type.kind
        found = self.add(self.fresh("n"), self.values_only(found, kind, censored=bool(bound)))
        if bound:
            self.censored_relations.add(found)
        return found

    def stepwise(self, rule_id: str) -> bool:
        """Whether a rule's value is a step function of time: it changes only at its change
        points, so its value at any instant is its value at the last change point at or before
        it. True unless it reads age or time since an event, which change continuously — except
        where two such counts in one unit are compared (:func:`counts_compared`)."""
        found = self._stepwise.get(rule_id)
        if found is None:
            todo: list[ast.Node] = [self.rules.rules[rule_id].define]
            found = True
            while todo and found:
                node = todo.pop()
                if counts_compared(node):
                    continue  # a step: see counts_compared
                if isinstance(node, ast.Age | ast.TimeSince):
                    found = False
                elif isinstance(node, ast.RuleRef):
                    found = self.stepwise(node.rule)
                else:
                    todo += ast.children(node)
            self._stepwise[rule_id] = found
        return found

    def steps(self, rule_id: str) -> str:
        """A stepwise rule evaluated once per patient at each of its change points and at
        STEP_ORIGIN, an instant before any of them: every value it takes, each holding from its
        instant to the next. A history takes a stepwise rule's intervals from here, and a rule
        using it reads it here (an as-of lookup) instead of evaluating the rule's whole tree
        again at every point of its own (the sJIA pack: 729 nodes expanded, 366 own)."""
        if rule_id not in self.steps_points:
            cp = self.change_points(self.rules.rules[rule_id].define)
            patients = self.add("pa", "SELECT DISTINCT patient_id FROM ev")
            self.steps_points[rule_id] = self.add(
                self.fresh("p"),
                f"SELECT patient_id, c AS q FROM {cp} UNION SELECT patient_id, {STEP_ORIGIN} FROM {patients}",
            )
        return self.rule(rule_id, self.steps_points[rule_id])

    def node(self, node: ast.Node, points: str) -> str:
        key = (node.nid, points)
        if key in self.out.names:
            return self.out.names[key]
        if isinstance(node, ast.RuleRef):
            # another rule's relation as it is: a copy of it (84 references in the sJIA pack)
            # was a relation of its own, materialised where several read it
            name = self.out.names[key] = self.rule_at(node.rule, points)
            return name
        method: Callable[[Any, str], str] | None = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise Unsupported(f"the engine cannot compile {type(node).__name__} nodes")
        sql = self.values_only(method(node, points), self.type(node).kind, censored=self.carries(node))
        name = self.add(self.fresh("n"), sql)
        self.out.names[key] = name
        if self.carries(node):
            self.censored_relations.add(name)
        return name

    def values_only(self, sql: str, kind: str, censored: bool = False) -> str:
        """A node's relation as its readers see it. Compiling for values, its evidence, window
        and note are constants and the value column of the other kind is NULL, so DuckDB prunes
        them from every join, lookup and temp table below (they were carried through each of a
        history's ~75 rule lookups and hundreds of joins only to be dropped: in a history's
        ASOF lookups, a third of their time). With evidence, ``sql`` as it is. ``censored``: a
        relation that carries a censored value's qualifier and bound (``cq``, ``cx``) keeps them."""
        if self.evidence:
            return sql
        b, x = ("b", "NULL::DOUBLE AS x") if kind == "bool" else ("NULL::BOOLEAN AS b", "x")
        bound = ", cq, cx" if censored else ""
        return (
            f"SELECT patient_id, q, {b}, {x}, why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, "
            f"NULL::TIMESTAMP AS hi, NULL AS note{bound} FROM ({sql})"
        )

    def type(self, node: ast.Node) -> ast.Type:
        return self.rules.types[node.nid]

    # ---- values known at compile time
    def literal(self, node: ast.Node) -> tuple[float | bool, str | None] | None:
        if isinstance(node, ast.Const):
            return node.value, node.unit
        if isinstance(node, ast.Param):
            spec = self.rules.rules[node.rule].param(node.name)
            value = spec.effective
            if isinstance(value, Duration | str):  # the loader refuses both as values
                raise Unsupported(f"parameter {node.name!r} is not a value")
            return value, spec.unit
        if isinstance(node, ast.Arith):
            return self._folded(node)
        return None

    def _folded(self, node: ast.Arith) -> tuple[float, str | None] | None:
        """Arithmetic of constants and parameters (``sub: [0, {param: improvement}]``), computed
        here as :meth:`_Arith` would compute it per point: one threshold instead of a relation
        of the same number at every point joined to the one it is compared with."""
        items = [self.literal(item) for item in node.items]
        values: list[float] = []
        for lit in items:
            if lit is None or isinstance(lit[0], bool):
                return None
            values.append(float(lit[0]))
        if node.op in ("add", "sub", "min", "max"):
            scales = self._scales(node.items, self.type(node.items[0]).unit)
            values = [v if c is None else c.apply(v) for v, c in zip(values, scales, strict=True)]
        if node.op == "div" and any(v == 0 for v in values[1:]):
            return None  # unknown at every point ('division by zero'): left to the relation
        if node.op == "add":
            value = sum(values)
        elif node.op == "sub":
            value = values[0] - sum(values[1:])
        elif node.op == "mul":
            value = math.prod(values)
        elif node.op == "div":
            value = values[0]
            for v in values[1:]:
                value /= v
        else:
            value = min(values) if node.op == "min" else max(values)
        unit = self.type(node).unit
        return round(value, 9), None if unit == "?" else unit

    def duration(self, ref: ast.DurationRef) -> Duration:
        return self.rules.duration(ref)

    def scaled(self, value: float, unit: str | None, target: str | None) -> float:
        if unit is None or target is None or unit == target:
            return value
        return conversion(unit, target).apply(value)

    def threshold(self, node: ast.Node, target: str | None) -> str:
        lit = self.literal(node)
        assert lit is not None
        value, unit = lit
        if isinstance(value, bool):
            return "true" if value else "false"
        return _num(round(self.scaled(value, unit, target), 9))

    # ---- selectors
    def predicate(self, sel: ast.Selector) -> str:
        parts: list[str] = []
        if sel.kinds:
            parts.append(f"kind IN ({', '.join(q_(k) for k in sel.kinds)})")
        if sel.codes:
            vitals = {v.code: k for k, v in codes.VITALS.items()}
            parts.append(f"code IN ({', '.join(q_(c) for c in sel.codes)})")
            if all(c in vitals for c in sel.codes) and not sel.kinds:
                parts[-1] = f"({parts[-1]} AND kind IN ({', '.join(q_(vitals[c]) for c in sel.codes)}))"
        if sel.drugs:
            parts.append(f"drug IN ({', '.join(q_(d) for d in sel.drugs)})")
        if sel.not_drugs:  # an event without a drug is of none of them
            parts.append(f"(drug IS NULL OR drug NOT IN ({', '.join(q_(d) for d in sel.not_drugs)}))")
        if sel.dose_unit is not None:
            parts.append(f"dose_unit = {q_(sel.dose_unit)}")
        if sel.present is not None:
            parts.append(f"coalesce(present, true) = {'true' if sel.present else 'false'}")
        for cond in sel.where:
            unit = field_unit(sel, cond.field)
            limit = self.threshold(cond.value, unit)
            test = f"round({cond.field}, 9) {ast.SYMBOLS[cond.op]} {limit}"
            if cond.field == "value":  # a censored value matches when its whole range does
                whole = censored.decide_sql(
                    cond.op, censored.of_sql("round(value, 9)", "value_qualifier"), censored.of_sql(limit)
                )
                test = f"CASE WHEN value_qualifier IS NULL THEN {test} ELSE coalesce({whole}, false) END"
            parts.append(test)
        if sel.any_of:
            parts.append("(" + " OR ".join(self.predicate(s) for s in sel.any_of) + ")")
        return " AND ".join(parts) if parts else "true"

    def select(self, sel: ast.Selector, fields: tuple[str, ...] = ()) -> str:
        """The events a selector matches: patient_id, seq, t (occurred_at) and the ``fields``
        its readers use, gathered over every reader (``asserted_seq`` for those that order
        events of one instant). A selector read twice is a temp table in
        a cohort run, and all 21 engine columns of every fever or CRP of 20k patients cost
        most of a small rule set's memory."""
        pred = self.predicate(sel)
        name = self.selectors.get(pred)
        if name is None:
            name = self.selectors[pred] = self.fresh("s")
            self.fields[name] = set()
            self.out.ctes.append((name, ""))
        need = self.fields[name]
        if not need or not need.issuperset(fields):
            need.update(("patient_id", "seq", *fields))
            cols = ", ".join(c for c in ENGINE_COLUMNS if c in need)
            self.out.replace(name, f"SELECT {cols}, occurred_at AS t FROM ev WHERE {pred}")
        return name

    def spans(self, sel: ast.Selector, ordered: bool = False) -> str:
        """The events a selector matches with ``te``, the instant each stops lasting: its
        ``ended_at`` (a date-only end covers its whole day), or its own instant without one;
        ``ordered``: with ``asserted_seq``."""
        order = ("asserted_seq",) if ordered else ()
        src = self.select(sel, ("ended_at", "ended_precision", *order))
        cols = "seq, asserted_seq" if ordered else "seq"
        return self.add(
            self.fresh("sp"), f"SELECT patient_id, {cols}, t, coalesce({_END}, t) AS te FROM {src}"
        )

    def latest_of(self, sel: ast.Selector, fld: str) -> str:
        """One row per (patient, instant): of events at one instant, the last asserted."""
        qualified = fld == "value"  # a censored value's qualifier, as cq
        src = self.select(
            sel,
            (fld, "asserted_seq", "ref_low", "ref_high", "unit", "orig_value", "orig_unit")
            + (("value_qualifier",) if qualified else ()),
        )
        cq = "value_qualifier" if qualified else "NULL::VARCHAR"
        return self.add(
            self.fresh("l"),
            f"""SELECT patient_id, t, seq, {fld} AS val, {cq} AS cq, ref_low, ref_high, unit, orig_value, orig_unit
                FROM {src} WHERE {fld} IS NOT NULL
                QUALIFY row_number() OVER (PARTITION BY patient_id, t ORDER BY asserted_seq DESC) = 1""",
        )

    def anchor(self, anchor: ast.Anchor, points: str) -> str:
        """(patient_id, q, ta, aseq): the anchor event at or before each point (of events at
        one instant, the last asserted)."""
        src = self.select(anchor.select, ("asserted_seq",))
        if anchor.which == "first":
            first = self.add(
                self.fresh("f"),
                f"""SELECT patient_id, t, seq FROM {src}
                    QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY t, asserted_seq DESC) = 1""",
            )
            sql = f"""SELECT p.patient_id, p.q, CASE WHEN f.t <= p.q THEN f.t END AS ta,
                             CASE WHEN f.t <= p.q THEN f.seq END AS aseq
                      FROM {points} p LEFT JOIN {first} f ON f.patient_id = p.patient_id"""
        else:
            last = self.add(
                self.fresh("f"),
                f"""SELECT patient_id, t, seq FROM {src}
                    QUALIFY row_number() OVER (PARTITION BY patient_id, t ORDER BY asserted_seq DESC) = 1""",
            )
            sql = f"""SELECT p.patient_id, p.q, f.t AS ta, f.seq AS aseq
                      FROM {points} p ASOF LEFT JOIN {last} f ON f.patient_id = p.patient_id AND f.t <= p.q"""
        return self.add(self.fresh("a"), sql)

    # ---- leaves
    def _Const(self, node: ast.Const, points: str) -> str:
        if isinstance(node.value, bool):
            return f"SELECT patient_id, q, {str(node.value).lower()} AS b, NULL::DOUBLE AS x, NULL AS why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, NULL AS note FROM {points}"
        return f"SELECT patient_id, q, NULL::BOOLEAN AS b, {_num(node.value)} AS x, NULL AS why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, NULL AS note FROM {points}"

    def _Param(self, node: ast.Param, points: str) -> str:
        lit = self.literal(node)
        assert lit is not None
        value, unit = lit
        note = (
            q_(f"parameter {node.name} = {value:g} {unit or ''}".strip())
            if not isinstance(value, bool)
            else q_(f"parameter {node.name} = {value}")
        )
        note = self.note(note)
        if isinstance(value, bool):
            return f"SELECT patient_id, q, {str(value).lower()} AS b, NULL::DOUBLE AS x, NULL AS why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {note} AS note FROM {points}"
        return f"SELECT patient_id, q, NULL::BOOLEAN AS b, {_num(value)} AS x, NULL AS why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {note} AS note FROM {points}"

    # ---- event-derived
    def _Latest(self, node: ast.Latest, points: str) -> str:
        src = self.latest_of(node.select, node.field)
        v = self.duration(node.within)
        name = node.select.name
        # a dose carries no unit column: its unit is the one its selector fixes
        unit = (
            q_(f" {field_unit(node.select, 'dose')}")
            if node.field == "dose"
            else "coalesce(' ' || nullif(s.unit, ''), '')"
        )
        fresh = f"s.t > p.q - {v.sql()}"
        # the value as shown: a censored one with its qualifier (<5 mg/L on 2009-03-01)
        shown = f"{q_(name + ' ')} || coalesce(s.cq, '') || tl_fmt(s.val) || {unit} || ' on ' || strftime(s.t, '%Y-%m-%d')"
        # a censored value (only ``value`` has one): unknown, its qualifier and bound beside
        extra = (
            f", CASE WHEN {fresh} THEN s.cq END AS cq, CASE WHEN {fresh} AND s.cq IS NOT NULL THEN s.val END AS cx"
            if self.carries(node)
            else ""
        )
        return f"""SELECT p.patient_id, p.q, NULL::BOOLEAN AS b,
                CASE WHEN {fresh} AND s.cq IS NULL THEN s.val END AS x,
                CASE WHEN s.seq IS NULL THEN {q_(f"no {name} recorded up to the date")}
                     WHEN s.t <= p.q - {v.sql()} THEN {q_(f"no {name} within {v}: the latest, on ")} || strftime(s.t, '%Y-%m-%d') || ', is too old'
                     WHEN s.cq IS NOT NULL THEN {censored_why(shown)}
                END AS why,
                {self.evs(f"CASE WHEN s.seq IS NULL THEN {EMPTY} ELSE [s.seq] END")} AS ev,
                p.q - {v.sql()} AS lo, p.q AS hi,
                {self.note(f"CASE WHEN s.seq IS NOT NULL THEN {shown} END")} AS note{extra}
            FROM {points} p ASOF LEFT JOIN {src} s ON s.patient_id = p.patient_id AND s.t <= p.q"""

    def findings(self, sel: ast.Selector) -> str:
        """The selector's records recorded present, each with ``te``, the last instant it
        lasts by its recorded end (NULL without one), and the record of the same kind and
        code recorded absent that ends it (``ct``, ``cseq``: the first after it in the
        timeline's order, NULL if none)."""
        src = self.select(sel, ("kind", "code", "present", "ended_at", "ended_precision", "asserted_seq"))
        absent = "NOT coalesce(present, true)"
        return self.add(
            self.fresh("fp"),
            f"""SELECT patient_id, seq, asserted_seq AS a, t, code, kind, te, cut.t AS ct, cut.a AS ca, cut.s AS cseq FROM (
                  SELECT patient_id, seq, asserted_seq, t, code, kind, coalesce(present, true) AS present, {_END} AS te,
                         min(CASE WHEN {absent} THEN {{'t': t, 'a': asserted_seq, 's': seq}} END) OVER (
                             PARTITION BY patient_id, kind, code ORDER BY t, asserted_seq
                             ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS cut
                  FROM {src})
                WHERE present""",
        )

    def _FindingPresent(self, node: ast.FindingPresent, points: str) -> str:
        src = self.findings(node.select)
        v = self.duration(node.within)
        # a record lasts by its recorded end, or without one while no older than `within`
        lasts = f"CASE WHEN s.te IS NOT NULL THEN p.q <= s.te ELSE s.t > p.q - {v.sql()} END"
        ended = "s.ct IS NOT NULL AND s.ct <= p.q"
        what = "coalesce(s.code, s.kind)"
        if not self.evidence:
            found = f"""SELECT p.patient_id, p.q, count(s.seq) AS n FROM {points} p LEFT JOIN {src} s
                  ON s.patient_id = p.patient_id AND s.t <= p.q AND {lasts} AND NOT ({ended})
                GROUP BY ALL"""
            g = self.add(self.fresh("g"), found)
            return f"""SELECT patient_id, q, n > 0 AS b, NULL::DOUBLE AS x, NULL AS why, {EMPTY} AS ev,
                    NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, NULL AS note FROM {g}"""
        found = f"""SELECT p.patient_id, p.q,
                count(s.seq) FILTER (WHERE NOT ({ended})) AS n,
                list(s.seq ORDER BY s.t, s.a) FILTER (WHERE s.seq IS NOT NULL AND NOT ({ended})) AS lasting,
                list_transform(list_sort(list_distinct(flatten(
                    list([{{'t': s.t, 'a': s.a, 's': s.seq}}, {{'t': s.ct, 'a': s.ca, 's': s.cseq}}]) FILTER (WHERE {ended})
                ))), lambda e: e.s) AS overruled,
                arg_max({what} || ' since ' || strftime(s.t, '%Y-%m-%d'), (s.t, s.a)) FILTER (WHERE NOT ({ended})) AS since,
                arg_max({what} || ' recorded absent on ' || strftime(s.ct, '%Y-%m-%d'), (s.ct, s.ca)) FILTER (WHERE {ended}) AS absent
            FROM {points} p LEFT JOIN {src} s ON s.patient_id = p.patient_id AND s.t <= p.q AND {lasts}
            GROUP BY ALL"""
        g = self.add(self.fresh("g"), found)
        first = self.add(
            self.fresh("f"),
            f"SELECT patient_id, min(t) AS t FROM {self.select(node.select)} GROUP BY patient_id",
        )
        name = node.select.name
        # "recorded": present or absent; nothing recorded at all is said apart (never examined)
        note = f"""CASE WHEN g.n > 0 THEN {q_(name + ": ")} || g.since
                        WHEN g.absent IS NOT NULL THEN {q_(name + ": ")} || g.absent
                        WHEN f.t IS NULL OR f.t > g.q THEN {q_(f"no {name} recorded up to the date")}
                        ELSE {q_(f"no {name} lasting at the date")} END"""
        return f"""SELECT g.patient_id, g.q, g.n > 0 AS b, NULL::DOUBLE AS x, NULL AS why,
                CASE WHEN g.n > 0 THEN g.lasting ELSE coalesce(g.overruled, {EMPTY}) END AS ev,
                NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {note} AS note FROM {g} g LEFT JOIN {first} f USING (patient_id)"""

    def bounds(self, window: ast.Window, ref: str, last: str = "s.t") -> tuple[str, str, str]:
        """(lo, hi, condition) of a window relative to the instant ``ref``: an event from s.t
        to ``last`` (an instant: s.t itself) is in the window when it overlaps it."""
        if window.start is None:  # ever: no lower bound
            lo, after_lo = "NULL::TIMESTAMP", f"{ref} IS NOT NULL"  # an anchored window needs its anchor
        else:
            lo = f"({ref} + {self.duration(window.start).sql()})"
            after_lo = f"{last} {'>=' if window.start_inclusive else '>'} {lo}"
        if window.end is None:  # up to the evaluation point
            return lo, "p.q", after_lo
        end = self.duration(window.end)
        hi = f"({ref} + {end.sql()})"
        return lo, hi, f"{after_lo} AND s.t {'<=' if window.end_inclusive else '<'} {hi}"

    def _Aggregate(self, node: ast.Aggregate, points: str) -> str:
        ordered = self.ordered(node)
        # a value of the window that is censored leaves min, max, mean, sum, first and last unknown
        cut = node.field == "value" and node.fn not in ("count", "exists") and not node.spans
        src = (
            self.spans(node.select, ordered)
            if node.spans
            else self.select(
                node.select,
                (node.field, *(("asserted_seq",) if ordered or cut else ()))
                + (("value_qualifier", "unit") if cut else ()),
            )
        )
        name = node.select.name
        base = points
        ref = "p.q"
        anchor_cols = ""
        if node.window.anchor is not None:
            base = self.anchor(node.window.anchor, points)
            ref = "p.ta"
            anchor_cols = ", p.ta, p.aseq"
        lo, hi, cond = self.bounds(node.window, ref, "s.te" if node.spans else "s.t")
        fld = "s." + node.field
        agg = {
            "count": "count(s.seq)::DOUBLE",
            "min": f"min({fld})",
            "max": f"max({fld})",
            "mean": f"avg({fld})",
            "sum": f"sum({fld})",
            "first": f"arg_min({fld}, (s.t, -s.asserted_seq))",
            "last": f"arg_max({fld}, (s.t, s.asserted_seq))",
            "exists": "count(s.seq)",
        }[node.fn]
        shown = (
            f"{q_(name + ' ')} || s.value_qualifier || tl_fmt(s.value) || coalesce(' ' || s.unit, '') "
            "|| ' on ' || strftime(s.t, '%Y-%m-%d')"
        )
        censored_col = (
            f", arg_min({shown}, (s.t, s.asserted_seq)) FILTER (WHERE s.value_qualifier IS NOT NULL) AS cut"
            if cut
            else ", NULL::VARCHAR AS cut"
        )
        # first, last: the value picked may be censored (the others do not matter); min, max:
        # the extreme of the ranges, exact or a range (censored.extreme)
        if cut and node.fn in ("first", "last"):
            by = "(s.t, -s.asserted_seq)" if node.fn == "first" else "(s.t, s.asserted_seq)"
            pick = "arg_min" if node.fn == "first" else "arg_max"
            censored_col += (
                f", {pick}({{'q': s.value_qualifier, 'v': s.value, 'shown': {shown}}}, {by}) AS pk"
            )
        elif cut and node.fn in ("min", "max"):
            exact, cq, cx = censored.extreme_sql(node.fn, fld, "s.value_qualifier")
            censored_col += f", {exact} AS ex, {cq} AS ecq, {cx} AS ecx"

        grouped = f"""SELECT p.patient_id, p.q{anchor_cols}, {lo} AS lo, {hi} AS hi, {agg} AS agg, count(s.seq) AS n{censored_col},
                {self.evs("list(s.seq ORDER BY s.t, s.asserted_seq) FILTER (WHERE s.seq IS NOT NULL)")} AS evs
            FROM {base} p LEFT JOIN {src} s ON s.patient_id = p.patient_id AND {cond} AND s.t <= p.q
                {"AND " + fld + " IS NOT NULL" if node.fn not in ("count", "exists") else ""}
            GROUP BY ALL"""
        g = self.add(self.fresh("g"), grouped)
        no_anchor = (
            f"WHEN g.ta IS NULL THEN {q_('no ' + node.window.anchor.select.name + ' recorded up to the date')}"
            if node.window.anchor is not None
            else ""
        )
        incomplete = "g.hi > g.q"
        # an anchored window without its anchor has no bounds
        unbounded = "g.ta IS NULL" if node.window.anchor is not None else "FALSE"
        bound = ""
        if node.fn == "exists":
            value = f"CASE WHEN g.n > 0 THEN true WHEN {incomplete} THEN NULL WHEN {unbounded} THEN NULL ELSE false END"
            why = f"""CASE WHEN g.n > 0 THEN NULL {no_anchor}
                 WHEN {incomplete} THEN {q_(f"no {name} so far, but the window ends after the date")} END"""
            cols = f"{value} AS b, NULL::DOUBLE AS x"
        elif node.fn == "count":
            value = f"CASE WHEN {incomplete} OR {unbounded} THEN NULL ELSE g.agg END"
            why = f"""CASE WHEN FALSE THEN NULL {no_anchor}
                 WHEN {incomplete} THEN {q_("the window ends after the date")} END"""
            cols = f"NULL::BOOLEAN AS b, {value} AS x"
        else:
            value = "CASE WHEN g.n > 0 AND g.cut IS NULL THEN g.agg END"
            # a censored value that leaves the value unknown, as SQL text naming it
            named = "g.cut"
            if cut and node.fn in ("first", "last"):
                value = "CASE WHEN g.n > 0 AND (g.cut IS NULL OR g.pk.q IS NULL) THEN g.agg END"
                named = "CASE WHEN g.pk.q IS NOT NULL THEN g.pk.shown END"
                bound = ", CASE WHEN g.n > 0 THEN g.pk.q END AS cq, CASE WHEN g.n > 0 AND g.pk.q IS NOT NULL THEN g.pk.v END AS cx"
            elif cut and node.fn in ("min", "max"):
                value = "CASE WHEN g.n > 0 THEN CASE WHEN g.cut IS NULL THEN g.agg ELSE g.ex END END"
                named = "CASE WHEN g.ecq IS NOT NULL THEN g.cut END"
                bound = ", CASE WHEN g.n > 0 THEN g.ecq END AS cq, CASE WHEN g.n > 0 THEN g.ecx END AS cx"
            why = f"""CASE WHEN g.n > 0 AND {named} IS NOT NULL THEN {censored_why(named, f"the {node.fn} of the window")}
                 WHEN g.n > 0 THEN NULL {no_anchor}
                 ELSE {q_(f"no {name} in the window")} END"""
            cols = f"NULL::BOOLEAN AS b, {value} AS x"
        evs = "coalesce(g.evs, []::BIGINT[])"
        if node.window.anchor is not None:
            evs = f"list_concat(CASE WHEN g.aseq IS NULL THEN {EMPTY} ELSE [g.aseq] END, {evs})"
        note = self.note(f"{q_(f'{node.fn} of {name}: ')} || g.n || ' event(s) in the window'")
        evs = self.evs(evs)
        return f"""SELECT g.patient_id, g.q, {cols}, {why} AS why, {evs} AS ev, g.lo, least(g.hi, g.q) AS hi, {note} AS note{bound} FROM {g} g"""

    def ordered(self, node: ast.Aggregate) -> bool:
        """Whether an aggregate orders the events of one instant (by the order they were
        asserted): for the value of first / last, and for the order of its evidence."""
        return self.evidence or node.fn in ("first", "last")

    def _Normal(self, node: ast.Normal, points: str) -> str:
        src = self.latest_of(node.select, "value")
        v = self.duration(node.within)
        unit = field_unit(node.select, "value")
        upper = self.threshold(node.upper, unit) if node.upper is not None else "NULL"
        lower = self.threshold(node.lower, unit) if node.lower is not None else "NULL"
        name = node.select.name
        note = f"""CASE WHEN s.seq IS NOT NULL THEN {q_(name + " ")} || coalesce(s.cq, '') || tl_fmt(s.val) || ' {unit}' ||
                    CASE WHEN s.ref_high IS NOT NULL AND s.ref_low IS NOT NULL
                         THEN ' vs the lab''s reference range ' || tl_fmt(s.ref_low) || '–' || tl_fmt(s.ref_high)
                         WHEN s.ref_high IS NOT NULL OR s.ref_low IS NOT NULL
                         THEN ' vs the lab''s reference range ' || coalesce('≥ ' || tl_fmt(s.ref_low), '≤ ' || tl_fmt(s.ref_high))
                              || coalesce(', the limit ' || CASE WHEN s.ref_low IS NULL THEN '≥ ' || tl_fmt({lower})
                                                                 ELSE '≤ ' || tl_fmt({upper}) END, '')
                         ELSE ' vs the limit ' || concat_ws(' ', '≥ ' || tl_fmt({lower}), '≤ ' || tl_fmt({upper})) || ' (no lab range)' END
                END"""
        hi, lo = f"coalesce(s.ref_high, {upper})", f"coalesce(s.ref_low, {lower})"
        # a censored value is normal only if its whole range is, not if none of it is
        r = censored.of_sql("s.val", "s.cq")
        whole = f"""(CASE WHEN {hi} IS NULL THEN true ELSE {censored.decide_sql("le", r, censored.of_sql(hi))} END
                    AND CASE WHEN {lo} IS NULL THEN true ELSE {censored.decide_sql("ge", r, censored.of_sql(lo))} END)"""
        shown = f"{q_(name + ' ')} || s.cq || tl_fmt(s.val) || ' {unit} on ' || strftime(s.t, '%Y-%m-%d')"
        return f"""SELECT p.patient_id, p.q,
                CASE WHEN s.t > p.q - {v.sql()} AND s.cq IS NOT NULL THEN {whole}
                     WHEN s.t > p.q - {v.sql()} THEN
                    ({hi} IS NULL OR s.val <= {hi})
                    AND ({lo} IS NULL OR s.val >= {lo})
                END AS b, NULL::DOUBLE AS x,
                CASE WHEN s.seq IS NULL THEN {q_(f"no {name} recorded up to the date")}
                     WHEN s.t <= p.q - {v.sql()} THEN {q_(f"no {name} within {v}: the latest, on ")} || strftime(s.t, '%Y-%m-%d') || ', is too old'
                     WHEN s.cq IS NOT NULL AND {whole} IS NULL THEN {censored_why(shown)}
                END AS why,
                {self.evs(f"CASE WHEN s.seq IS NULL THEN {EMPTY} ELSE [s.seq] END")} AS ev,
                p.q - {v.sql()} AS lo, p.q AS hi,
                {self.note(note)} AS note
            FROM {points} p ASOF LEFT JOIN {src} s ON s.patient_id = p.patient_id AND s.t <= p.q"""

    def medications(self, drugs: tuple[str, ...], except_routes: tuple[str, ...] = ()) -> str:
        key = "med:" + ",".join(drugs) + ("|not:" + ",".join(except_routes) if except_routes else "")
        if key not in self.selectors:
            routes = (
                f" AND (route IS NULL OR route NOT IN ({', '.join(q_(r) for r in except_routes)}))"
                if except_routes
                else ""
            )
            self.selectors[key] = self.add(
                self.fresh("m"),
                f"""SELECT patient_id, occurred_at AS t, seq, asserted_seq, kind, drug, dose, dose_unit, frequency FROM ev
                    WHERE kind IN ({", ".join(q_(k) for k in ast.MEDICATION_KINDS)}) AND drug IN ({", ".join(q_(d) for d in drugs)}){routes}
                    QUALIFY row_number() OVER (PARTITION BY patient_id, drug, occurred_at, {_SINGLE} ORDER BY asserted_seq DESC) = 1""",
            )
        return self.selectors[key]

    def _OnDrug(self, node: ast.OnDrug, points: str) -> str:
        # a course runs from a start or dose change to the drug's next start, dose change, stop
        # or discontinuation; a single dose (frequency once) is on for the rest of its day and
        # neither starts nor ends a course
        meds = self.medications(node.drugs, node.except_routes)
        course = self.add(self.fresh("mc"), f"SELECT * FROM {meds} WHERE NOT {_SINGLE}")
        single = self.add(self.fresh("ms"), f"SELECT * FROM {meds} WHERE {_SINGLE}")
        if not self.evidence:
            # On a drug from each start or dose change until that drug's next event: these
            # intervals, found once, against the points (instead of one as-of lookup per point
            # and drug; 19 drugs × 42k points for 1k patients was ~0.4 s).
            spans = self.add(
                self.fresh("o"),
                f"""SELECT patient_id, t, nxt FROM (
                        SELECT patient_id, t, kind, lead(t) OVER (PARTITION BY patient_id, drug ORDER BY t) AS nxt FROM {course})
                    WHERE kind IN ('medication_start', 'medication_dose_change')
                    UNION ALL SELECT patient_id, t, date_trunc('day', t) + INTERVAL 1 DAY FROM {single}""",
            )
            return f"""SELECT p.patient_id, p.q, EXISTS (SELECT 1 FROM {spans} o WHERE o.patient_id = p.patient_id
                        AND o.t <= p.q AND (o.nxt IS NULL OR o.nxt > p.q)) AS b,
                    NULL::DOUBLE AS x, NULL AS why, {EMPTY} AS ev, NULL::TIMESTAMP AS lo, p.q AS hi, NULL AS note
                FROM {points} p"""
        drugs = ", ".join(f"({q_(d)})" for d in node.drugs)
        per = self.add(
            self.fresh("d"),
            f"""SELECT p.patient_id, p.q, p.drug, m.kind, m.seq, m.asserted_seq, m.t, false AS single
                FROM (SELECT * FROM {points} CROSS JOIN (VALUES {drugs}) d(drug)) p
                ASOF LEFT JOIN {course} m ON m.patient_id = p.patient_id AND m.drug = p.drug AND m.t <= p.q
                UNION ALL
                SELECT p.patient_id, p.q, p.drug, m.kind, m.seq, m.asserted_seq, m.t, true AS single
                FROM (SELECT * FROM {points} CROSS JOIN (VALUES {drugs}) d(drug)) p
                ASOF JOIN {single} m ON m.patient_id = p.patient_id AND m.drug = p.drug AND m.t <= p.q
                ORDER BY ALL""",
        )
        on = "CASE WHEN single THEN t::DATE = q::DATE ELSE kind IN ('medication_start', 'medication_dose_change') END"
        not_read = f" other than by {' or '.join(node.except_routes)} route" if node.except_routes else ""
        what = "CASE WHEN single THEN 'single dose' ELSE replace(kind, '_', ' ') END"
        return f"""SELECT patient_id, q, coalesce(bool_or({on}), false) AS b, NULL::DOUBLE AS x, NULL AS why,
                coalesce(list(seq ORDER BY t, asserted_seq) FILTER (WHERE seq IS NOT NULL), []::BIGINT[]) AS ev,
                NULL::TIMESTAMP AS lo, q AS hi,
                coalesce(string_agg(drug || ': ' || {what} || ' on ' || strftime(t, '%Y-%m-%d'), '; ' ORDER BY drug, single) FILTER (WHERE seq IS NOT NULL),
                         {q_(f"none of {', '.join(node.drugs)} recorded up to the date{not_read}")}) AS note
            FROM {per} GROUP BY patient_id, q"""

    def _DailyDose(self, node: ast.DailyDose, points: str) -> str:
        # the course's dose: a single dose (frequency once) in it neither changes nor ends it
        every = self.medications((node.drug,))
        meds = self.add(self.fresh("mc"), f"SELECT * FROM {every} WHERE NOT {_SINGLE}")
        weight = self.latest_of(ast.Selector(name="weight", kinds=("weight",)), "value")
        v = self.duration(node.weight_within)
        freq = ", ".join(f"({q_(k)}, {_num(f)})" for k, f in self.rules.codebook.frequencies.items())
        needs_weight = "(m.dose_unit = 'mg')" if node.per_kg else "(m.dose_unit = 'mg/kg')"
        per_day = "m.dose * fq.per_day"
        value = (
            f"CASE WHEN m.dose_unit = 'mg/kg' THEN {per_day} ELSE {per_day} / w.val END"
            if node.per_kg
            else f"CASE WHEN m.dose_unit = 'mg' THEN {per_day} ELSE {per_day} * w.val END"
        )
        unit = "mg/kg/day" if node.per_kg else "mg/day"
        ev = f"""list_concat(CASE WHEN m.seq IS NULL THEN {EMPTY} ELSE [m.seq] END,
                            CASE WHEN {needs_weight} AND w.seq IS NOT NULL THEN [w.seq] ELSE {EMPTY} END)"""
        # the drug's name is text from a rule file or a parameter: quoted, never pasted into SQL
        note = f"""CASE WHEN m.seq IS NULL THEN {q_(f"no {node.drug} recorded: 0 {unit}")}
                     WHEN m.kind IN ('medication_stop', 'discontinuation') THEN {q_(f"{node.drug} stopped on ")} || strftime(m.t, '%Y-%m-%d') || ': 0 {unit}'
                     ELSE {q_(f"{node.drug} ")} || tl_fmt(m.dose) || ' ' || m.dose_unit || ' ' || coalesce(m.frequency, '(no frequency)')
                          || CASE WHEN {needs_weight} AND w.seq IS NOT NULL THEN ', weight ' || tl_fmt(w.val) || ' kg on ' || strftime(w.t, '%Y-%m-%d') ELSE '' END
                END"""
        return f"""SELECT p.patient_id, p.q, NULL::BOOLEAN AS b,
                CASE WHEN m.seq IS NULL OR m.kind IN ('medication_stop', 'discontinuation') THEN 0.0
                     WHEN fq.per_day IS NULL THEN NULL
                     WHEN {needs_weight} AND NOT (w.t > p.q - {v.sql()}) THEN NULL
                     WHEN {needs_weight} AND w.seq IS NULL THEN NULL
                     ELSE round({value}, {DOSE_DECIMALS}) END AS x,
                CASE WHEN m.seq IS NULL OR m.kind IN ('medication_stop', 'discontinuation') THEN NULL
                     WHEN fq.per_day IS NULL THEN {q_(f"frequency of the {node.drug} dose not recorded")}
                     WHEN {needs_weight} AND w.seq IS NULL THEN 'no weight recorded up to the date'
                     WHEN {needs_weight} AND NOT (w.t > p.q - {v.sql()}) THEN 'no weight within {v}: the latest, on ' || strftime(w.t, '%Y-%m-%d') || ', is too old'
                END AS why,
                {self.evs(ev)} AS ev,
                p.q - {v.sql()} AS lo, p.q AS hi,
                {self.note(note)} AS note
            FROM {points} p
            ASOF LEFT JOIN {meds} m ON m.patient_id = p.patient_id AND m.t <= p.q
            LEFT JOIN (VALUES {freq}) fq(code, per_day) ON fq.code = m.frequency
            ASOF LEFT JOIN {weight} w ON w.patient_id = p.patient_id AND w.t <= p.q"""

    def _Age(self, node: ast.Age, points: str) -> str:
        return self._since(anchor_of(node), node.unit, points, "birth date")

    def _TimeSince(self, node: ast.TimeSince, points: str) -> str:
        return self._since(node.anchor, node.unit, points, node.anchor.select.name)

    def _since(self, anchor: ast.Anchor, unit: str, points: str, label: str) -> str:
        a = self.anchor(anchor, points)
        div = {"years": "365.25", "months": "30.4375", "days": "1.0"}[unit]
        return f"""SELECT patient_id, q, NULL::BOOLEAN AS b,
                CASE WHEN ta IS NOT NULL THEN date_diff('day', ta::DATE, q::DATE) / {div}::DOUBLE END AS x,
                CASE WHEN ta IS NULL THEN {q_(f"no {label} recorded up to the date")} END AS why,
                {self.evs(f"CASE WHEN aseq IS NULL THEN {EMPTY} ELSE [aseq] END")} AS ev, ta AS lo, q AS hi,
                {self.note(f"CASE WHEN ta IS NOT NULL THEN {q_(label + ' on ')} || strftime(ta, '%Y-%m-%d') END")} AS note
            FROM {a}"""

    # ---- combinations
    def joined(
        self,
        items: tuple[ast.Node, ...] | list[ast.Node],
        points: str,
        scales: list[Conversion | None] | None = None,
        censored: bool = False,
    ) -> str:
        """The items side by side: (patient_id, q, b0, x0, why0, ev0, b1, …); ``censored``:
        with each item's ``cq`` and ``cx`` too, as ``cq0``, ``cx0``, … (see reads_censored). Every node has
        exactly one row per point of its points relation, so the items join one to one on
        (patient_id, q) — a few hash joins, where a union grouped by point with list and string
        aggregates cost ~1 ms per relation for one patient and ~0.1 s per 40k points."""
        cols = []
        src = ""
        for i, item in enumerate(items):
            child = self.node(item, points)
            x = f"c{i}.x"
            conv = None if scales is None else scales[i]
            if conv is not None:
                x = conv.sql(x)
            cols.append(f"c{i}.b AS b{i}, {x} AS x{i}, c{i}.why AS why{i}, {self.evs(f'c{i}.ev')} AS ev{i}")
            if censored:  # a censored value's qualifier and bound (NULL for an item without one)
                cx = f"c{i}.cx" if conv is None else conv.sql(f"c{i}.cx")
                cols.append(
                    f"c{i}.cq AS cq{i}, {cx} AS cx{i}"
                    if self.carries(item)
                    else f"NULL::VARCHAR AS cq{i}, NULL::DOUBLE AS cx{i}"
                )
            src += f"{child} c{i}" if i == 0 else f" JOIN {child} c{i} USING (patient_id, q)"
        return f"SELECT patient_id, q, {', '.join(cols)} FROM {src}"

    @staticmethod
    def reasons(picked: list[str]) -> str:
        """The reasons of the picked items (NULL where not picked) joined by '; ', distinct and
        sorted; NULL if there are none."""
        return f"nullif(array_to_string(list_sort(list_distinct([{', '.join(picked)}])), '; '), '')"

    @staticmethod
    def ordered_reasons(src: str, picked: list[str]) -> tuple[str, str]:
        """The reasons of the picked items (NULL or empty where not picked) in item order, each
        clause ("; "-separated) once, where an earlier reason gave it (replay's ``_concat``):
        ``src`` wrapped so that the expression returned can read it, and the expression.

        Folded left with ``tl_why2`` (the reasons so far, then the next one's clauses they lack),
        one projection per item (columns ``_o0``…, ``_a1``…, so no expression is repeated):
        a row with at most one reason (every row of a known value) splits no string. The
        reasons so far hold exactly the clauses of the items before, so the fold keeps the
        clauses the list form kept (a list per row, each reason's clauses looked up among
        those of every earlier reason through nested lambdas: ~20 µs a row for the seven
        items of ms_score)."""
        k = len(picked)
        if k == 1:
            return src, f"nullif({picked[0]}, '')"
        if k == 2:
            return src, f"tl_why2({picked[0]}, {picked[1]})"
        src = f"SELECT *, {', '.join(f'{p} AS _o{i}' for i, p in enumerate(picked))} FROM ({src})"
        acc = "_o0"
        for i in range(1, k):
            src = f"SELECT *, tl_why2({acc}, _o{i}) AS _a{i} FROM ({src})"
            acc = f"_a{i}"
        return src, acc

    @staticmethod
    def sorted_reasons(src: str, picked: list[str]) -> tuple[str, str]:
        """:meth:`reasons`, distinct and sorted, without building a list per row: ``src``
        wrapped so that the expression returned can read it, and the expression.

        The same strings as ``array_to_string(list_sort(list_distinct(picked)), '; ')``, at a
        fraction of the cost (a list, a hash set and a sort per row; measured on 2M rows: 0.85
        → 0.11 s for two items, 1.1 → 0.37 s for three, 0.90 → 0.53 s for eight):
        - one item: itself;
        - two: compared in place;
        - three to eight: the k-th smallest distinct reason is the least of those greater than
          the (k-1)-th, one projection each (columns ``_r0``…, so no expression is repeated);
        - more: the list form, which is as fast from there on."""
        k = len(picked)
        if k == 1:
            return src, f"nullif({picked[0]}, '')"
        if k == 2:
            a, b = (f"_w{i}" for i in range(2))
            src = f"SELECT *, {picked[0]} AS _w0, {picked[1]} AS _w1 FROM ({src})"
            two = f"CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL OR {a} = {b} THEN {a} WHEN {a} < {b} THEN {a} || '; ' || {b} ELSE {b} || '; ' || {a} END"
            return src, f"nullif({two}, '')"
        if k > 8:
            return src, Compiler.reasons(picked)
        ws = [f"_w{i}" for i in range(k)]
        src = f"SELECT *, {', '.join(f'{p} AS {w}' for p, w in zip(picked, ws, strict=True))} FROM ({src})"
        for j in range(k):
            if j == 0:
                least = ", ".join(ws)
            else:
                least = ", ".join(f"CASE WHEN {w} > _r{j - 1} THEN {w} END" for w in ws)
            src = f"SELECT *, least({least}) AS _r{j} FROM ({src})"
        return src, f"nullif(concat_ws('; ', {', '.join(f'_r{j}' for j in range(k))}), '')"

    def _items_evidence(self, n: int, false: bool) -> str:
        """The concatenated evidence of the items that are true (or, with ``false``, false)."""
        test = " = false" if false else ""
        return self.evs(
            "flatten(["
            + ", ".join(f"CASE WHEN b{i}{test} THEN ev{i} ELSE {EMPTY} END" for i in range(n))
            + "])"
        )

    def _logic(self, node: ast.Logic | ast.AtLeast | ast.CountTrue, points: str) -> str:
        """all / any / at_least / count_true with SQL's three-valued AND / OR (false AND
        unknown is false, true OR unknown is true). Unknown: the reasons of the unknown items,
        which could still decide it. Evidence: of the items that decided it (the true ones of a
        true `any`, the false ones of a false `all`), else of all."""
        k = len(node.items)
        n = range(k)
        src = self.joined(node.items, points)
        true = " + ".join(f"(b{i} IS TRUE)::INTEGER" for i in n)
        null = " + ".join(f"(b{i} IS NULL)::INTEGER" for i in n)
        every = self.evs("flatten([" + ", ".join(f"ev{i}" for i in n) + "])")
        counted = f"nt || ' of {k} true'"
        unknown = "CASE WHEN nn > 0 THEN ', ' || nn || ' unknown' ELSE '' END"
        if isinstance(node, ast.CountTrue):
            note = f"{counted} || CASE WHEN nn > 0 THEN ', ' || nn || ' unknown (not counted)' ELSE '' END"
            return f"""SELECT patient_id, q, NULL::BOOLEAN AS b, nt::DOUBLE AS x, NULL AS why, {self._items_evidence(k, false=False)} AS ev,
                    NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {self.note(note)} AS note
                FROM (SELECT *, {true} AS nt, {null} AS nn FROM ({src}))"""
        if isinstance(node, ast.AtLeast):
            value = f"CASE WHEN nt >= {node.n} THEN true WHEN nt + nn < {node.n} THEN false END"
            ev = f"CASE WHEN b THEN {self._items_evidence(k, False)} WHEN NOT b THEN {self._items_evidence(k, True)} ELSE {every} END"
            note = f"{counted} || ' (need {node.n})' || {unknown}"
        else:
            value = f" {'AND' if node.op == 'all' else 'OR'} ".join(f"b{i}" for i in n)
            # decided by its false items (all) or its true items (any)
            false = node.op == "all"
            ev = f"CASE WHEN b{' = false' if false else ''} THEN {self._items_evidence(k, false)} ELSE {every} END"
            note = f"{counted} || {unknown}"
        counted_src = f"SELECT *, {value} AS b FROM (SELECT *, {true} AS nt, {null} AS nn FROM ({src}))"
        shared = self.unknown_reasons(node.items, points)
        if shared is not None:
            # the sorted reasons of the unknown items, made once for every node that has them
            return f"""SELECT patient_id, q, b, NULL::DOUBLE AS x, CASE WHEN b IS NULL THEN u.why END AS why,
                    {self.evs(ev)} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {self.note(note)} AS note
                FROM ({counted_src}) JOIN {shared} u USING (patient_id, q)"""
        # only an unknown result has reasons: for a known one every picked item is NULL
        src, why = self.sorted_reasons(
            counted_src, [f"CASE WHEN b IS NULL AND b{i} IS NULL THEN why{i} END" for i in n]
        )
        return f"""SELECT patient_id, q, b, NULL::DOUBLE AS x, {why} AS why,
                {self.evs(ev)} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {self.note(note)} AS note
            FROM ({src})"""

    def unknown_reasons(self, items: tuple[ast.Node, ...], points: str) -> str | None:
        """A relation (patient_id, q, why) of the sorted, distinct reasons of the unknown ones
        among ``items`` (:meth:`sorted_reasons`), made from their operands, where there are three
        or more and each is a comparison of a number with a constant (or the ``not`` of one);
        else None.

        Such a comparison is unknown exactly when its number is (a constant is never NULL, and
        a censored number, which a range may decide, is not one of these) and passes on the
        number's reason, so these reasons depend on the numbers alone, not on the constants:
        nodes comparing the same numbers with other thresholds (the four ACR Pedi levels'
        ``at_least 3 of 6`` improvements and their shared worsening test) share one relation
        (:meth:`add` finds it identical), and its strings are sorted once instead of once per
        node. A node's reason is this where its own value is unknown (every item its reason
        could name is then unknown too), exactly the text its items' reasons would make."""
        if len(items) < 3:
            return None
        sources: list[str] = []
        for item in items:
            while isinstance(item, ast.Not):
                item = item.item
            if not (
                isinstance(item, ast.Compare)
                and self.type(item.left).kind != "bool"
                and not self.carries(item.left)
                and self.literal(item.right) is not None
            ):
                return None
            sources.append(self.node(item.left, points))
        found = list(dict.fromkeys(sources))  # a number compared twice gives its reason once
        cols = ", ".join(f"c{i}.x AS x{i}, c{i}.why AS why{i}" for i in range(len(found)))
        joins = " JOIN ".join(
            f"{rel} c{i}" + (" USING (patient_id, q)" if i else "") for i, rel in enumerate(found)
        )
        src, why = self.sorted_reasons(
            f"SELECT patient_id, q, {cols} FROM {joins}",
            [f"CASE WHEN x{i} IS NULL THEN why{i} END" for i in range(len(found))],
        )
        return self.add(self.fresh("ur"), f"SELECT patient_id, q, {why} AS why FROM ({src})")

    def _Compare(self, node: ast.Compare, points: str) -> str:
        left_t = self.type(node.left)
        left = self.node(node.left, points)
        sym = ast.SYMBOLS[node.op]
        if left_t.kind == "bool":
            right = self.node(node.right, points)
            return f"""SELECT l.patient_id, l.q, l.b {sym} r.b AS b, NULL::DOUBLE AS x,
                    tl_why2(l.why, r.why) AS why, {self.evs("list_concat(l.ev, r.ev)")} AS ev,
                    coalesce(l.lo, r.lo) AS lo, coalesce(l.hi, r.hi) AS hi, NULL AS note
                FROM {left} l JOIN {right} r USING (patient_id, q)"""
        unit = left_t.unit
        lit = self.literal(node.right)
        words = display_unit(unit)
        shown = f" {words}" if words else ""
        if self.carries(node.left) or (lit is None and self.carries(node.right)):
            return self._compare_censored(node, left, points, lit is not None, shown)
        if lit is not None:
            rhs = self.threshold(node.right, unit)
            holds = _holds(node.op, f"round(l.x, 9) {sym} {rhs}")
            note = self.note(
                f"CASE WHEN l.x IS NOT NULL THEN tl_fmt(l.x) || {holds} || tl_fmt({rhs}) || {q_(shown)} END"
            )
            return f"""SELECT l.patient_id, l.q, round(l.x, 9) {sym} {rhs} AS b, NULL::DOUBLE AS x, l.why, l.ev, l.lo, l.hi,
                    {note} AS note
                FROM {left} l"""
        c = self._scales((node.right,), unit)[0]
        right = self.node(node.right, points)
        rx = "r.x" if c is None else c.sql("r.x")
        holds = _holds(node.op, f"round(l.x, 9) {sym} round({rx}, 9)")
        return f"""SELECT l.patient_id, l.q, round(l.x, 9) {sym} round({rx}, 9) AS b, NULL::DOUBLE AS x,
                tl_why2(l.why, r.why) AS why, {self.evs("list_concat(l.ev, r.ev)")} AS ev,
                coalesce(l.lo, r.lo) AS lo, coalesce(l.hi, r.hi) AS hi,
                {self.note(f"CASE WHEN l.x IS NOT NULL AND r.x IS NOT NULL THEN tl_fmt(l.x) || {holds} || tl_fmt({rx}) || {q_(shown)} END")} AS note
            FROM {left} l JOIN {right} r USING (patient_id, q)"""

    def _compare_censored(self, node: ast.Compare, left: str, points: str, literal: bool, shown: str) -> str:
        """A comparison whose operand may be a censored value (a ``latest`` of a lab's
        ``value``): decided on its range where it can be (see timeline.engine.censored), as
        usual where no operand is censored. Unknown when undecided, with the reason of the
        operand that is (it names the censored value)."""
        unit = self.type(node.left).unit
        sym = ast.SYMBOLS[node.op]

        def side(alias: str, item: ast.Node, conv: Conversion | None) -> tuple[str, str]:
            """(the number compared, rounded, and the qualifier) of one operand."""
            x = f"coalesce({alias}.x, {alias}.cx)" if self.carries(item) else f"{alias}.x"
            x = x if conv is None else conv.sql(x)
            return f"round({x}, 9)", f"{alias}.cq" if self.carries(item) else "NULL::VARCHAR"

        lx, lq = side("l", node.left, None)
        if literal:
            rx, rq = self.threshold(node.right, unit), "NULL::VARCHAR"
            src = f"FROM {left} l"
            plain = f"round(l.x, 9) {sym} {rx}"
            whys, evs, bounds = "l.why", "l.ev", "l.lo, l.hi"
            plain_note = f"tl_fmt(l.x) || {_holds(node.op, plain)} || tl_fmt({rx}) || {q_(shown)}"
            known = "l.x IS NOT NULL"
        else:
            right = self.node(node.right, points)
            c = self._scales((node.right,), unit)[0]
            rx, rq = side("r", node.right, c)
            rxp = "r.x" if c is None else c.sql("r.x")
            src = f"FROM {left} l JOIN {right} r USING (patient_id, q)"
            plain = f"round(l.x, 9) {sym} round({rxp}, 9)"
            whys, evs = "tl_why2(l.why, r.why)", "list_concat(l.ev, r.ev)"
            bounds = "coalesce(l.lo, r.lo) AS lo, coalesce(l.hi, r.hi) AS hi"
            plain_note = f"tl_fmt(l.x) || {_holds(node.op, plain)} || tl_fmt({rxp}) || {q_(shown)}"
            known = "l.x IS NOT NULL AND r.x IS NOT NULL"
        decided = censored.decide_sql(node.op, censored.of_sql("_lx", "_lq"), censored.of_sql("_rx", "_rq"))
        any_q = "(_lq IS NOT NULL OR _rq IS NOT NULL)"
        holds = f"CASE WHEN b IS NULL THEN ' vs ' ELSE {_holds(node.op, 'b')} END"
        note = f"""CASE WHEN NOT {any_q} THEN _pnote WHEN _lx IS NOT NULL AND _rx IS NOT NULL THEN
                        coalesce(_lq, '') || tl_fmt(_lx) || {holds} || coalesce(_rq, '') || tl_fmt(_rx) || {q_(shown)} END"""
        pnote = self.note(f"CASE WHEN {known} THEN {plain_note} END")
        return f"""SELECT patient_id, q, b, NULL::DOUBLE AS x,
                CASE WHEN {any_q} AND b IS NOT NULL THEN NULL ELSE why END AS why, ev, lo, hi,
                {self.note(note)} AS note
            FROM (SELECT *, CASE WHEN {any_q} THEN {decided} ELSE _plain END AS b FROM (
                SELECT l.patient_id, l.q, {lx} AS _lx, {lq} AS _lq, {rx} AS _rx, {rq} AS _rq, {plain} AS _plain,
                       {pnote} AS _pnote, {whys} AS why, {self.evs(evs)} AS ev, {bounds}
                {src}))"""

    def _Logic(self, node: ast.Logic, points: str) -> str:
        return self._logic(node, points)

    def _AtLeast(self, node: ast.AtLeast, points: str) -> str:
        return self._logic(node, points)

    def _CountTrue(self, node: ast.CountTrue, points: str) -> str:
        return self._logic(node, points)

    def _Not(self, node: ast.Not, points: str) -> str:
        child = self.node(node.item, points)
        return (
            # the item's note states facts (counts, values) that stay true of its negation
            f"SELECT patient_id, q, NOT b AS b, NULL::DOUBLE AS x, why, ev, lo, hi, note FROM {child}"
        )

    def _scales(self, items: tuple[ast.Node, ...], unit: str | None) -> list[Conversion | None]:
        """Each item's conversion to ``unit`` (None: none needed), as the replay's ``scale``
        converts it: by the exact ratio of the units where they have one."""
        out: list[Conversion | None] = []
        for item in items:
            t = self.type(item)
            if t.unit in (None, "?") or unit in (None, "?") or t.unit == unit:
                out.append(None)
            else:
                c = conversion(t.unit, unit)
                out.append(None if c.identity else c)
        return out

    def _Arith(self, node: ast.Arith, points: str) -> str:
        unit = self.type(node.items[0]).unit
        scales = self._scales(node.items, unit) if node.op in ("add", "sub", "min", "max") else None
        carries = self.carries(node)  # min_of, max_of over a censored value (reads_censored)
        src = self.joined(node.items, points, scales, censored=carries)
        if carries:
            return self._extreme(node, src)
        xs = [f"x{i}" for i in range(len(node.items))]
        expr = {
            "add": " + ".join(xs),
            "sub": f"{xs[0]} - ({' + '.join(xs[1:])})" if len(xs) > 1 else xs[0],
            "mul": " * ".join(xs),
            "div": " / ".join(xs),
            "min": f"least({', '.join(xs)})",
            "max": f"greatest({', '.join(xs)})",
        }[node.op]
        unknown = " OR ".join(f"{x} IS NULL" for x in xs)
        src, why = self.ordered_reasons(
            src, [f"CASE WHEN {x} IS NULL THEN why{i} END" for i, x in enumerate(xs)]
        )
        if node.op == "div":
            zero = " OR ".join(f"{x} = 0" for x in xs[1:]) or "false"
            expr = f"CASE WHEN {zero} THEN NULL ELSE {expr} END"
            why = f"coalesce({why}, CASE WHEN {zero} THEN 'division by zero' END)"
        shown = ", ".join(f"coalesce(tl_fmt({x}), '?')" for x in xs)
        note = f"{node.op!r} || '(' || concat_ws(', ', {shown}) || ')'"
        ev = "flatten([" + ", ".join(f"ev{i}" for i in range(len(xs))) + "])"
        return f"""SELECT patient_id, q, NULL::BOOLEAN AS b,
                CASE WHEN {unknown} THEN NULL ELSE round({expr}, 9) END AS x,
                {why} AS why, {self.evs(ev)} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {self.note(note)} AS note
            FROM ({src})"""

    def _extreme(self, node: ast.Arith, src: str) -> str:
        """``min_of`` / ``max_of`` whose operands may be censored values (``src``: the operands
        joined, each with its ``cq``, ``cx``): the extreme of their ranges
        (:func:`censored.extreme`), exact where no censored value moves it (max of ``<5`` and 8
        is 8), else a bound and qualifier, its reason the first censored operand's (it names
        the value); unknown where an operand is unknown and not censored, with the reasons of
        every operand without a value, as any arithmetic (the replay's ``_extreme``)."""
        n = range(len(node.items))
        items = [(f"coalesce(x{i}, cx{i})", f"cq{i}") for i in n]
        unknown = " OR ".join(f"(x{i} IS NULL AND cq{i} IS NULL)" for i in n)
        stages, (exact, cq, cx) = censored.extreme_row_sql(node.op, items)
        for stage in stages:
            src = f"SELECT *, {stage} FROM ({src})"
        src, why = self.ordered_reasons(src, [f"CASE WHEN x{i} IS NULL THEN why{i} END" for i in n])
        first = "CASE " + " ".join(f"WHEN cq{i} IS NOT NULL THEN why{i}" for i in n) + " END"
        shown = ", ".join(f"coalesce(tl_fmt(x{i}), cq{i} || tl_fmt(cx{i}), '?')" for i in n)
        note = f"{node.op!r} || '(' || concat_ws(', ', {shown}) || ')'"
        ev = "flatten([" + ", ".join(f"ev{i}" for i in n) + "])"
        return f"""SELECT patient_id, q, NULL::BOOLEAN AS b,
                CASE WHEN {unknown} THEN NULL ELSE round({exact}, 9) END AS x,
                CASE WHEN {unknown} THEN {why} WHEN {cq} IS NOT NULL THEN {first} END AS why,
                {self.evs(ev)} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, {self.note(note)} AS note,
                CASE WHEN NOT ({unknown}) THEN {cq} END AS cq,
                CASE WHEN NOT ({unknown}) THEN round({cx}, 9) END AS cx
            FROM ({src})"""

    def _Clip(self, node: ast.Clip, points: str) -> str:
        child = self.node(node.item, points)
        x = "x"
        if node.high is not None:
            x = f"least({x}, {_num(node.high)})"
        if node.low is not None:
            x = f"greatest({x}, {_num(node.low)})"
        # least/greatest skip NULLs: without the guard an unknown value would clip to a bound
        x = f"CASE WHEN x IS NOT NULL THEN {x} END"
        note = self.note(f"CASE WHEN x IS NOT NULL AND {x} <> x THEN 'clipped from ' || tl_fmt(x) END")
        return f"SELECT patient_id, q, NULL::BOOLEAN AS b, {x} AS x, why, ev, lo, hi, {note} AS note FROM {child}"

    def _Coalesce(self, node: ast.Coalesce, points: str) -> str:
        """The first item with a value, its evidence; unknown if none has one. A censored value
        is a value (only not an exact one): the first item may be one, and is then taken, its
        qualifier, bound and reason with it (see reads_censored)."""
        n = range(len(node.items))
        carries = self.carries(node)
        has = [
            f"(b{i} IS NOT NULL OR x{i} IS NOT NULL{f' OR cq{i} IS NOT NULL' if carries else ''})" for i in n
        ]
        none = " AND ".join(f"NOT {h}" for h in has)
        ev = "CASE " + " ".join(f"WHEN {has[i]} THEN ev{i}" for i in n) + f" ELSE {EMPTY} END"
        src, why = self.ordered_reasons(
            self.joined(node.items, points, censored=carries),
            [f"CASE WHEN {none} THEN why{i} END" for i in n],
        )
        x = f"coalesce({', '.join(f'x{i}' for i in n)})"
        bound = ""
        if carries:  # the picked item's: a censored one has no x, its reason says why

            def pick(col: str) -> str:
                return "CASE " + " ".join(f"WHEN {has[i]} THEN {col}{i}" for i in n) + " END"

            x = pick("x")
            why = (
                f"coalesce({why}, CASE "
                + " ".join(f"WHEN {has[i]} THEN CASE WHEN cq{i} IS NOT NULL THEN why{i} END" for i in n)
                + " END)"
            )
            bound = f", {pick('cq')} AS cq, {pick('cx')} AS cx"
        return f"""SELECT patient_id, q, coalesce({", ".join(f"b{i}" for i in n)}) AS b,
                {x} AS x, {why} AS why,
                {self.evs(ev)} AS ev, NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi, NULL AS note{bound}
            FROM ({src})"""

    def _UnknownUnless(self, node: ast.UnknownUnless, points: str) -> str:
        value = self.node(node.value, points)
        cond = self.node(node.condition, points)
        return f"""SELECT v.patient_id, v.q, CASE WHEN c.b THEN v.b END AS b, CASE WHEN c.b THEN v.x END AS x,
                CASE WHEN c.b THEN v.why WHEN c.b IS NULL THEN tl_why2({q_(node.reason)}, c.why)
                     ELSE {q_(node.reason)} END AS why,
                {self.evs("list_concat(v.ev, c.ev)")} AS ev, v.lo, v.hi, v.note
            FROM {value} v JOIN {cond} c USING (patient_id, q)"""

    def _PctChange(self, node: ast.PctChange, points: str) -> str:
        value = self.node(node.value, points)
        base = self.node(node.baseline, points)
        scale = self._scales((node.baseline,), self.type(node.value).unit)[0]
        bx = "b.x" if scale is None else scale.sql("b.x")
        note = f"""CASE WHEN v.x IS NOT NULL AND b.x IS NOT NULL THEN 'from ' || tl_fmt({bx}) || ' to ' || tl_fmt(v.x)
                     || CASE WHEN {bx} = 0 THEN ' (baseline 0)' ELSE '' END END"""
        return f"""SELECT v.patient_id, v.q, NULL::BOOLEAN AS b,
                CASE WHEN v.x IS NULL OR b.x IS NULL THEN NULL
                     WHEN {bx} = 0 THEN CASE WHEN v.x > 0 THEN 'infinity'::DOUBLE WHEN v.x < 0 THEN '-infinity'::DOUBLE ELSE 0 END
                     ELSE round((v.x - {bx}) / abs({bx}) * 100, 6) END AS x,
                tl_why2(v.why, b.why) AS why, {self.evs("list_concat(b.ev, v.ev)")} AS ev,
                NULL::TIMESTAMP AS lo, NULL::TIMESTAMP AS hi,
                {self.note(note)} AS note
            FROM {value} v JOIN {base} b USING (patient_id, q)"""

    def anchored_at(self, node: ast.AtAnchor, ta: str) -> str:
        """The instant an ``at_anchor`` evaluates its expression at, for the anchor time ``ta``:
        ta + offset, or the last instant of that day with ``whole_day``."""
        at = f"{ta} + {self.duration(node.offset).sql()}"
        return f"(CAST({at} AS DATE) + INTERVAL 1 DAY - {_EPS})" if node.whole_day else f"({at})"

    def _AtAnchor(self, node: ast.AtAnchor, points: str) -> str:
        a = self.anchor(node.anchor, points)
        off = self.duration(node.offset)
        at_ta = self.anchored_at(node, "ta")
        pts2 = self.add(
            self.fresh("p"), f"SELECT DISTINCT patient_id, {at_ta} AS q FROM {a} WHERE ta IS NOT NULL"
        )
        inner = self.node(node.expr, pts2)
        self.anchored[(node.nid, points)] = (a, at_ta)
        name = node.anchor.select.name
        shifted = f"{name} + {off}" if not off.is_zero else name
        at = self.anchored_at(node, "a.ta")
        if node.whole_day:
            label, not_yet = f"on the day of the {shifted} (", f"the day of the {shifted} ends after the date"
        else:
            label, not_yet = f"at the {shifted} (", f"{off} after the {name} is after the date"
        ev = f"""CASE WHEN a.aseq IS NULL THEN {EMPTY} WHEN {at} > a.q THEN [a.aseq]
                     ELSE list_concat([a.aseq], coalesce(e.ev, {EMPTY})) END"""
        at_text = f"""{q_(label)} || strftime({at}, '%Y-%m-%d') || ')'"""
        note = f"CASE WHEN a.ta IS NOT NULL THEN {at_text} END"
        # a censored value at the anchor stays one (see reads_censored)
        bound = (
            f", CASE WHEN {at} <= a.q THEN e.cq END AS cq, CASE WHEN {at} <= a.q THEN e.cx END AS cx"
            if self.carries(node)
            else ""
        )
        return f"""SELECT a.patient_id, a.q,
                CASE WHEN {at} <= a.q THEN e.b END AS b,
                CASE WHEN {at} <= a.q THEN e.x END AS x,
                CASE WHEN a.ta IS NULL THEN {q_(f"no {name} recorded up to the date")}
                     WHEN {at} > a.q THEN {q_(not_yet)}
                     ELSE {at_text} || ': ' || e.why END AS why,
                {self.evs(ev)} AS ev,
                e.lo, e.hi,
                {self.note(note)} AS note{bound}
            FROM {a} a LEFT JOIN {inner} e ON e.patient_id = a.patient_id AND e.q = {at}"""

    def _HeldFor(self, node: ast.HeldFor, points: str) -> str:
        if not self.evidence:
            return self._held_for_values(node, points)
        d = self.duration(node.duration)
        cp = self.change_points(node.expr)
        pts2 = self.add(
            self.fresh("p"),
            f"""SELECT DISTINCT p.patient_id, p.q AS q0, c.q FROM {points} p
                JOIN (SELECT patient_id, c AS q FROM {cp}) c ON c.patient_id = p.patient_id
                  AND c.q > p.q - {d.sql()} AND c.q <= p.q
                UNION SELECT patient_id, q AS q0, q - {d.sql()} AS q FROM {points}""",
        )
        inner_pts = self.add(self.fresh("p"), f"SELECT DISTINCT patient_id, q FROM {pts2}")
        inner = self.node(node.expr, inner_pts)
        self.held[(node.nid, points)] = (pts2, inner_pts)
        # the evidence in seq order, as the replay gives it: list() collects in the join's order,
        # which changes with the plan and with DuckDB's threads (explain listed them so)
        return f"""SELECT p.patient_id, p.q0 AS q,
                CASE WHEN count(*) FILTER (WHERE e.b = false) > 0 THEN false WHEN count(*) FILTER (WHERE e.b IS NULL) > 0 THEN NULL ELSE true END AS b,
                NULL::DOUBLE AS x,
                CASE WHEN count(*) FILTER (WHERE e.b = false) = 0 AND count(*) FILTER (WHERE e.b IS NULL) > 0
                     THEN 'not known at every moment of the last {d}: ' || {_clauses("list(e.why) FILTER (WHERE e.b IS NULL)")} END AS why,
                list_sort(list_distinct(flatten(list(e.ev)))) AS ev, min(p.q) AS lo, p.q0 AS hi,
                CASE WHEN count(*) FILTER (WHERE e.b = false) > 0
                     THEN 'not true on ' || strftime(min(p.q) FILTER (WHERE e.b = false), '%Y-%m-%d') || ' (within the last {d})'
                     ELSE 'checked at every change over the last {d}' END AS note
            FROM {pts2} p JOIN {inner} e ON e.patient_id = p.patient_id AND e.q = p.q
            GROUP BY p.patient_id, p.q0"""

    def _held_for_values(self, node: ast.HeldFor, points: str) -> str:
        """``held_for`` without evidence, in O(n log n) instead of a join of every point with
        every change point of its window (quadratic for the dense points of a history).

        The expression is sampled at its change points (those that can matter: from the
        earliest window start to the latest point of each patient) and at each window start
        q − d. A sample's value holds until the next change point, so the value held over the
        whole of [q − d, q] exactly when no sample in [q − d, q] is false (or unknown). A
        running maximum of the times of false (unknown) samples, looked up as of q, answers
        that for every point at once; only points left unknown join their window's unknown
        samples, for the reasons."""
        d = self.duration(node.duration)
        cp = self.change_points(node.expr)
        at_q = None
        if self.dense:
            span = self.add(
                self.fresh("p"),
                f"SELECT patient_id, min(q) - {d.sql()} AS lo, max(q) AS hi FROM {points} GROUP BY patient_id",
            )
            samples = self.add(
                self.fresh("p"),
                f"""SELECT DISTINCT c.patient_id, c.c AS q FROM {cp} c JOIN {span} s ON s.patient_id = c.patient_id
                        AND c.c > s.lo AND c.c <= s.hi
                    UNION SELECT patient_id, q - {d.sql()} FROM {points}""",
            )
        else:
            # A few points per patient (a cohort run): where the expression is false at the
            # point itself it was not held, so only the windows of the other points are
            # sampled (clinical remission, 10k patients: 420k samples → see benchmarks/README).
            at_q = self.node(node.expr, points)
            open_ = self.add(
                self.fresh("p"), f"SELECT patient_id, q FROM {at_q} WHERE b IS DISTINCT FROM false"
            )
            samples = self.add(
                self.fresh("p"),
                f"""SELECT DISTINCT c.patient_id, c.c AS q FROM {cp} c JOIN {open_} p ON p.patient_id = c.patient_id
                        AND c.c > p.q - {d.sql()} AND c.c <= p.q
                    UNION SELECT patient_id, q - {d.sql()} FROM {open_}""",
            )
        inner = self.node(node.expr, samples)
        runs = self.add(
            self.fresh("u"),
            f"""SELECT patient_id, q AS t, b, why,
                    max(CASE WHEN b = false THEN q END) OVER w AS last_false,
                    max(CASE WHEN b IS NULL THEN q END) OVER w AS last_unknown,
                    CASE WHEN b IS NULL AND lag(b IS NULL) OVER w AND why IS NOT DISTINCT FROM lag(why) OVER w
                         THEN 0 ELSE 1 END AS new
                FROM {inner} WINDOW w AS (PARTITION BY patient_id ORDER BY q ROWS UNBOUNDED PRECEDING)""",
        )
        closed = "" if at_q is None else "WHEN a.b = false THEN false"
        src = (
            f"{points} p"
            if at_q is None
            else f"{points} p JOIN {at_q} a ON a.patient_id = p.patient_id AND a.q = p.q"
        )
        held = self.add(
            self.fresh("n"),
            f"""SELECT p.patient_id, p.q,
                    CASE {closed} WHEN r.last_false >= p.q - {d.sql()} THEN false
                         WHEN r.last_unknown >= p.q - {d.sql()} THEN NULL ELSE true END AS b
                FROM {src} ASOF LEFT JOIN {runs} r ON r.patient_id = p.patient_id AND r.t <= p.q""",
        )
        # The reasons of an unknown point: those of the unknown samples in its window. Each
        # run of consecutive unknown samples with one reason is one row [s, e]; a window
        # starts at a sample, so it holds a sample of a run exactly when it overlaps the run
        # (a history's dense points joined every sample of their window: 7.7 s of 48 s at 10k
        # patients).
        unknown = self.add(
            self.fresh("u"),
            f"""SELECT patient_id, why, min(t) AS s, max(t) AS e FROM (
                    SELECT *, sum(new) OVER (PARTITION BY patient_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS run FROM {runs})
                WHERE b IS NULL GROUP BY patient_id, run, why""",
        )
        reasons = self.add(
            self.fresh("w"),
            f"""SELECT h.patient_id, h.q, {_clauses("list(u.why)")} AS why
                FROM {held} h JOIN {unknown} u ON u.patient_id = h.patient_id AND u.s <= h.q AND u.e >= h.q - {d.sql()}
                WHERE h.b IS NULL GROUP BY h.patient_id, h.q""",
        )
        return f"""SELECT h.patient_id, h.q, h.b, NULL::DOUBLE AS x,
                CASE WHEN h.b IS NULL THEN 'not known at every moment of the last {d}: ' || r.why END AS why,
                {EMPTY} AS ev, h.q - {d.sql()} AS lo, h.q AS hi, NULL AS note
            FROM {held} h LEFT JOIN {reasons} r ON r.patient_id = h.patient_id AND r.q = h.q"""

    # ---- episodes
    def episodes(self, spec: ast.Episodes, merged: bool = True) -> str:
        """(patient_id, s, e, ev): episodes (merged across gaps ≤ merge_gap, or the raw
        intervals); ``e`` is FAR for an open episode."""
        gap = self.duration(spec.merge_gap)
        if spec.select is not None:
            src = self.select(spec.select, ("ended_at", "ended_precision", "asserted_seq"))
            raw = f"SELECT patient_id, t AS s, coalesce({_END}, {FAR}) AS e, {self.evs('[seq]')} AS ev, asserted_seq FROM {src}"
        else:
            assert spec.when is not None
            raw = self.condition_intervals(spec.when)
        raw_name = self.add(self.fresh("r"), raw)
        if not merged:
            return raw_name
        marked = self.add(
            self.fresh("k"),
            f"""SELECT *, CASE WHEN s <= max(e) OVER (PARTITION BY patient_id ORDER BY s, asserted_seq
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + {_EPS} + {gap.sql()} THEN 0 ELSE 1 END AS new
                FROM {raw_name}""",
        )
        return self.add(
            self.fresh("e"),
            f"""SELECT patient_id, min(s) AS s, max(e) AS e, {self.evs("flatten(list(ev ORDER BY s, asserted_seq))")} AS ev FROM (
                    SELECT *, sum(new) OVER (PARTITION BY patient_id ORDER BY s, asserted_seq) AS grp FROM {marked})
                GROUP BY patient_id, grp""",
        )

    def condition_intervals(self, cond: ast.Node) -> str:
        """Intervals over which a boolean holds, from its value at each of its change points."""
        cp = self.change_points(cond)
        patients = self.add("pa", "SELECT DISTINCT patient_id FROM ev")
        pts2 = self.add(
            self.fresh("p"),
            f"SELECT DISTINCT patient_id, c AS q FROM {cp} WHERE c > {ORIGIN} UNION SELECT patient_id, {ORIGIN} FROM {patients}",
        )
        guard = self.guard(cond)
        if guard is None:
            inner = self.node(cond, pts2)
        else:
            # Only where the condition holds matters here. An `all` holds only where each of
            # its items does, so the cheapest item, evaluated at every change point, picks the
            # few points worth evaluating the whole condition at (MAS: ferritin > 684 at 431k
            # change points → the criteria at ~5k; 10k patients, 6.0 s → 0.5 s). Elsewhere
            # the value is left NULL: not true, which is all the runs below distinguish.
            g = self.node(guard, pts2)
            pts3 = self.add(self.fresh("p"), f"SELECT patient_id, q FROM {g} WHERE b")
            # the condition's own tree at these few points: a rule reference would be looked
            # up in a history (see rule_at), which evaluates the rule at all its change points
            while isinstance(cond, ast.RuleRef):
                cond = self.rules.rules[cond.rule].define
            full = self.node(cond, pts3)
            inner = self.add(
                self.fresh("n"),
                f"""SELECT p.patient_id, p.q, f.b, f.ev FROM {pts2} p
                    LEFT JOIN {full} f ON f.patient_id = p.patient_id AND f.q = p.q""",
            )
        runs = self.add(
            self.fresh("u"),
            f"""SELECT patient_id, q, b, ev,
                    lead(q) OVER (PARTITION BY patient_id ORDER BY q) AS nxt,
                    CASE WHEN b IS NOT DISTINCT FROM lag(b) OVER (PARTITION BY patient_id ORDER BY q) THEN 0 ELSE 1 END AS chg
                FROM {inner}""",
        )
        # evq: the evidence at each moment of the episode, for in_episode at a moment inside it
        evq = "list({'q': q, 'ev': ev} ORDER BY q)" if self.evidence else "NULL"
        return f"""SELECT patient_id, min(q) AS s,
                    CASE WHEN count(nxt) < count(*) THEN {FAR} ELSE max(nxt) - {_EPS} END AS e,
                    {self.evs("list_distinct(flatten(list(ev)))")} AS ev, {evq} AS evq,
                    min(q)::VARCHAR AS seq0, 0 AS asserted_seq FROM (
                SELECT *, sum(chg) OVER (PARTITION BY patient_id ORDER BY q) AS grp FROM {runs})
            WHERE b GROUP BY patient_id, grp"""

    def guard(self, cond: ast.Node) -> ast.Node | None:
        """An item that must be true wherever ``cond`` is (the smallest item of an ``all``),
        or None."""
        while isinstance(cond, ast.RuleRef):
            cond = self.rules.rules[cond.rule].define
        if not isinstance(cond, ast.Logic) or cond.op != "all" or len(cond.items) < 2:
            return None
        return min(cond.items, key=self.size)

    def size(self, node: ast.Node) -> int:
        """Nodes in a tree, referenced rules included: a cost estimate."""
        if isinstance(node, ast.RuleRef):
            return 1 + self.size(self.rules.rules[node.rule].define)
        return 1 + sum(self.size(c) for c in ast.children(node))

    def _InEpisode(self, node: ast.InEpisode, points: str) -> str:
        # Inside a recorded (or condition) interval. Gaps are not bridged here: bridging a gap
        # needs the next episode, which has not happened yet at a moment inside the gap.
        # Merging across gaps counts episodes (episode_count).
        # A condition's episode ends when the condition stops holding, known only after q: its
        # end is not shown, and its evidence is the condition's up to q (see replay).
        eps = self.episodes(node.episodes, merged=False)
        derived = node.episodes.when is not None
        start = f"""'episode from ' || CASE WHEN min(e.s) = {ORIGIN} THEN 'the start of the record' ELSE strftime(min(e.s), '%Y-%m-%d') END"""
        end = (
            ""
            if derived
            else f""" || CASE WHEN max(e.e) = {FAR} THEN ' (open)' ELSE ' to ' || strftime(max(e.e), '%Y-%m-%d') END"""
        )
        note = f"CASE WHEN count(e.s) > 0 THEN {start}{end} END"
        if derived:
            ev = f"""coalesce(list_sort(list_distinct(flatten(flatten(
                        list(list_transform(list_filter(e.evq, lambda x: x.q <= p.q), lambda x: x.ev))
                        FILTER (WHERE e.s IS NOT NULL))))), {EMPTY})"""
            hi = "NULL::TIMESTAMP"
        else:
            ev = f"coalesce(flatten(list(e.ev ORDER BY e.s, e.asserted_seq) FILTER (WHERE e.s IS NOT NULL)), {EMPTY})"
            hi = f"CASE WHEN max(e.e) = {FAR} THEN NULL ELSE max(e.e) END"
        return f"""SELECT p.patient_id, p.q, count(e.s) > 0 AS b, NULL::DOUBLE AS x, NULL AS why,
                {self.evs(ev)} AS ev, nullif(min(e.s), {ORIGIN}) AS lo, {hi} AS hi,
                {self.note(note)} AS note
            FROM {points} p LEFT JOIN {eps} e ON e.patient_id = p.patient_id AND e.s <= p.q AND p.q <= e.e
            GROUP BY p.patient_id, p.q"""

    def _EpisodeCount(self, node: ast.EpisodeCount, points: str) -> str:
        eps = self.episodes(node.episodes)
        base, ref, anchor_cols = points, "p.q", ""
        # like an anchored aggregate: unknown without the anchor, which is part of the evidence
        no_anchor, no_anchor_why, anchor_ev = "", "", EMPTY
        if node.window.anchor is not None:
            base = self.anchor(node.window.anchor, points)
            ref, anchor_cols = "p.ta", ", p.ta, p.aseq"
            no_anchor = "WHEN max(c.ta) IS NULL THEN NULL"
            no_anchor_why = f"WHEN max(c.ta) IS NULL THEN {q_('no ' + node.window.anchor.select.name + ' recorded up to the date')}"
            anchor_ev = f"CASE WHEN max(c.aseq) IS NULL THEN {EMPTY} ELSE [max(c.aseq)] END"
        lo, hi, cond = self.bounds(node.window, ref)
        cond = cond.replace("s.t", "e.s")
        starts = self.add(
            self.fresh("c"),
            f"""SELECT p.patient_id, p.q{anchor_cols}, {lo} AS lo, {hi} AS hi, e.s, e.ev
                FROM {base} p LEFT JOIN {eps} e ON e.patient_id = p.patient_id AND {cond} AND e.s <= p.q""",
        )
        keep = "TRUE"
        join = ""
        if node.starting_when is not None:
            spts = self.add(
                self.fresh("p"), f"SELECT DISTINCT patient_id, s AS q FROM {starts} WHERE s IS NOT NULL"
            )
            inner = self.node(node.starting_when, spts)
            join = f"LEFT JOIN {inner} w ON w.patient_id = c.patient_id AND w.q = c.s"
            keep = "w.b"
        return f"""SELECT c.patient_id, c.q, NULL::BOOLEAN AS b,
                CASE {no_anchor} WHEN max(c.hi) > c.q THEN NULL ELSE count(c.s) FILTER (WHERE {keep})::DOUBLE END AS x,
                CASE {no_anchor_why} WHEN max(c.hi) > c.q THEN 'the window ends after the date' END AS why,
                {self.evs(f"list_concat({anchor_ev}, coalesce(flatten(list(c.ev ORDER BY c.s) FILTER (WHERE c.s IS NOT NULL AND {keep})), {EMPTY}))")} AS ev,
                min(c.lo) AS lo, least(max(c.hi), c.q) AS hi,
                {self.note(f"count(c.s) FILTER (WHERE {keep}) || ' episode(s) starting in the window'")} AS note
            FROM {starts} c {join} GROUP BY c.patient_id, c.q"""

    # ---- change points
    def change_points(self, node: ast.Node) -> str:
        """CTE (patient_id, c) of the instants at which ``node``'s value can change."""
        if node.nid in self.out.cp_names:
            return self.out.cp_names[node.nid]
        parts = self._cp_parts(node)
        sql = (
            " UNION ".join(parts)
            if parts
            else "SELECT NULL::VARCHAR AS patient_id, NULL::TIMESTAMP AS c WHERE false"
        )
        name = self.add(self.fresh("cp"), sql)
        self.out.cp_names[node.nid] = name
        return name

    def _shifted(self, src: str, offsets: list[str], col: str = "t") -> list[str]:
        out = [
            f"SELECT patient_id, {col} {o} AS c FROM {src}"
            if o
            else f"SELECT patient_id, {col} AS c FROM {src}"
            for o in offsets
        ]
        for o in offsets:
            if "month" in o or "year" in o:
                out.append(self._calendar_edges(src, o, col))
        return out

    def _calendar_edges(self, src: str, offset: str, col: str) -> str:
        """Extra change points of ``t vs q ± months``: q − 1 month clips the day of the month,
        so near a month end it runs backwards at midnight (28 Mar 10:00 − 1 month is 28 Feb
        10:00, 29 Mar 00:00 − 1 month is 28 Feb 00:00). For an instant on day 28 or later the
        comparison can flip at midnight and at the instant's time of day on every day from
        t ± months to the end of that month, and at the first instant of the next month."""
        return f"""SELECT patient_id, unnest([d, d + (y - date_trunc('day', y)), date_trunc('month', y) + INTERVAL 1 MONTH]) AS c
            FROM (SELECT patient_id, y, unnest(generate_series(date_trunc('day', y), last_day(y)::TIMESTAMP, INTERVAL 1 DAY)) AS d
                  FROM (SELECT patient_id, {col} {offset} AS y FROM {src} WHERE day({col}) >= 28))"""

    def _window_offsets(self, window: ast.Window) -> list[str]:
        end = self.duration(window.end) if window.end is not None else Duration(0, "day")
        # an event at t is inside [q+start, q+end] while q runs from t-end to t-start
        enter = f"- {end.sql()}" + ("" if window.end_inclusive else f" + {_EPS}")
        if window.start is None:  # ever: an event never leaves
            return ["", enter]
        start = self.duration(window.start)
        leave = f"- {start.sql()}" + (f" + {_EPS}" if window.start_inclusive else "")
        return ["", enter, leave]

    def _cp_parts(self, node: ast.Node) -> list[str]:
        """The change points of ``node`` as the distinct sources they come from: the leaves'
        shifted event times, through every combination and referenced rule. One UNION of
        them is one distinct pass, where a union per level of the tree deduplicated the same
        instants once per level (inactive disease: 8 items, 6 of them other rules)."""
        parts = self._cp_memo.get(node.nid)
        if parts is None:
            parts = self._cp_memo[node.nid] = list(dict.fromkeys(self._cp(node)))
        return parts

    def _cp(self, node: ast.Node) -> list[str]:
        if isinstance(node, ast.Const | ast.Param):
            return []
        if isinstance(node, ast.RuleRef):
            return self._cp_parts(self.rules.rules[node.rule].define)
        if isinstance(node, ast.Latest | ast.Normal):
            src = self.latest_of(node.select, node.field if isinstance(node, ast.Latest) else "value")
            return self._shifted(src, ["", f"+ {self.duration(node.within).sql()}"])
        if isinstance(node, ast.FindingPresent):
            # a record appears, stops lasting (its end, or `within` after it), or is ended by an
            # absent record
            src = self.findings(node.select)
            return [
                *self._shifted(src, ["", f"+ {self.duration(node.within).sql()}"]),
                f"SELECT patient_id, te + {_EPS} AS c FROM {src} WHERE te IS NOT NULL",
                f"SELECT patient_id, ct AS c FROM {src} WHERE ct IS NOT NULL",
            ]
        if isinstance(node, ast.Aggregate | ast.EpisodeCount):
            window = node.window
            cols = ["t"]
            if isinstance(node, ast.Aggregate) and node.spans:
                # an event also leaves at its end
                src, cols = self.spans(node.select, self.ordered(node)), ["t", "te"]
            elif isinstance(node, ast.Aggregate):
                src = self.select(node.select)
            else:
                src, cols = self.episodes(node.episodes), ["s"]
            out: list[str] = []
            if window.anchor is not None:
                asrc = self.select(window.anchor.select)
                offsets = [""]
                if window.start is not None:
                    start = self.duration(window.start)
                    offsets += [f"+ {start.sql()}", f"+ {start.sql()} + {_EPS}"]
                if window.end is not None:
                    end = self.duration(window.end)
                    offsets += [f"+ {end.sql()}", f"+ {end.sql()} + {_EPS}"]
                out += self._shifted(asrc, offsets)
                for col in cols:
                    out += self._shifted(src, ["", f"+ {_EPS}"], col)
            else:
                for col in cols:
                    out += self._shifted(src, self._window_offsets(window), col)
            if isinstance(node, ast.EpisodeCount) and node.starting_when is not None:
                out += self._cp_parts(node.starting_when)
            return out
        if isinstance(node, ast.OnDrug):
            meds = self.medications(node.drugs, node.except_routes)
            # a single dose is on until the midnight after it
            ends = (
                f"SELECT patient_id, date_trunc('day', t) + INTERVAL 1 DAY AS c FROM {meds} WHERE {_SINGLE}"
            )
            return [*self._shifted(meds, [""]), ends]
        if isinstance(node, ast.DailyDose):
            weight = self.latest_of(ast.Selector(name="weight", kinds=("weight",)), "value")
            v = self.duration(node.weight_within)
            return self._shifted(self.medications((node.drug,)), [""]) + self._shifted(
                weight, ["", f"+ {v.sql()}"]
            )
        if isinstance(node, ast.Age | ast.TimeSince):
            # the anchor event appears (or, for the last one, moves); the count of days then
            # steps at every midnight, which matters only where it is compared (below)
            return [f"SELECT patient_id, t AS c FROM {self.select(anchor_of(node).select)}"]
        if isinstance(node, ast.AtAnchor):
            src = self.select(node.anchor.select)
            return [
                f"SELECT patient_id, t AS c FROM {src}",
                f"SELECT patient_id, {self.anchored_at(node, 't')} AS c FROM {src}",
            ]
        if isinstance(node, ast.HeldFor):
            inner = self.change_points(node.expr)
            d = self.duration(node.duration)
            return self._shifted(inner, ["", f"+ {d.sql()}"], "c")
        if isinstance(node, ast.InEpisode):
            eps = self.episodes(node.episodes, merged=False)
            return [
                f"SELECT patient_id, s AS c FROM {eps}",
                f"SELECT patient_id, e + {_EPS} AS c FROM {eps} WHERE e < {FAR}",
            ]
        out = [part for c in ast.children(node) for part in self._cp_parts(c)]
        if isinstance(node, ast.Compare):  # and the midnights it flips on, for age / time_since
            for crossing in self.crossing(node) or ():
                if crossing.days:
                    src = self.select(crossing.anchor.select)
                    days = ", ".join(str(k) for k in crossing.days)
                    out.append(
                        f"""SELECT patient_id, (t::DATE + k)::TIMESTAMP AS c
                            FROM {src}, (SELECT unnest([{days}]) AS k) WHERE t::DATE + k < {FAR}::DATE"""
                    )
        return out
