"""Where a comparison of ``age`` or ``time_since`` with a constant can flip.

``age`` and ``time_since`` count whole calendar days from their anchor event's date to the
date of ``q`` (README, "The language"), in days or divided by the mean month or year: between
two events they step once a day, at midnight, and no event marks the step. A comparison of one
with a constant (``ge: [age, 5]``, ``lt: [{time_since: …}, {param: limit}]``), directly or
through arithmetic with constants, ``min_of`` / ``max_of``, ``clip``, ``coalesce``,
``unknown_unless`` and rules that are such numbers, flips on the day the count of days crosses the threshold. That day does not depend on
the patient, only on the threshold: it is found here once per comparison, as a number of days
after the anchor's date, and both evaluators (the compiler's change points and the replay's
candidates) add the midnights around it after each anchor event. Every such function of the
count is monotone, so each of ``h ≥ 0`` and ``h > 0`` (``h``: the compared difference) flips at
most once; the day before and after each flip are added too, which absorbs the evaluators'
rounding (6 digits for the count, 9 for the comparison).

A comparison of such a number with another changing value (a lab, another age) is not
covered: its crossing depends on the patient's data (README, history).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from timeline.language import ast
from timeline.language.durations import Duration
from timeline.language.loader import RuleSet
from timeline.units import conversion

PER_DAYS = {"years": 365.25, "months": 30.4375, "days": 1.0}
MAX_DAYS = 200 * 366  # no duration is longer than 200 years

Fn = Callable[[float], float]


@dataclass(frozen=True)
class Crossing:
    """``leaf`` (an ``age`` or ``time_since`` node) makes the comparison flip on the midnights
    ``days`` days after its anchor event's date."""

    leaf: ast.Age | ast.TimeSince
    days: tuple[int, ...]


@dataclass(frozen=True)
class _Form:
    leaf: ast.Age | ast.TimeSince | None  # None: a constant
    fn: Fn  # the node's value from the leaf's (ignored for a constant)
    unit: str | None


def _scale(frm: str | None, to: str | None) -> Fn:
    if frm in (None, "?") or to in (None, "?") or frm == to:
        return lambda x: x
    assert frm is not None and to is not None
    c = conversion(frm, to)
    return c.apply


def _then(g: Fn, s: Fn) -> Fn:
    return lambda x: s(g(x))


class _Finder:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def unit(self, node: ast.Node) -> str | None:
        return self.rules.types[node.nid].unit

    def forms(self, node: ast.Node, depth: int = 0) -> list[_Form] | None:
        """The node as one or more monotone functions of one age / time_since each (or
        constants), one of which is its value at any moment — ``coalesce`` takes one of its
        items, ``min_of`` / ``max_of`` of several changing numbers changes where one of them
        crosses; None when it is none of these."""
        if depth > 200:
            return None
        if isinstance(node, ast.Const):
            if isinstance(node.value, bool):
                return None
            value = float(node.value)
            return [_Form(None, lambda _x: value, node.unit)]
        if isinstance(node, ast.Param):
            spec = self.rules.rules[node.rule].param(node.name)
            if isinstance(spec.effective, Duration | bool) or spec.effective is None:
                return None
            value = float(spec.effective)
            return [_Form(None, lambda _x: value, spec.unit)]
        if isinstance(node, ast.Age | ast.TimeSince):
            return [_Form(node, lambda x: x, self.unit(node))]
        if isinstance(node, ast.RuleRef):
            inner = self.forms(self.rules.rules[node.rule].define, depth + 1)
            reported = self.rules.reported(node.rule)  # the rule's value in its declared unit
            if inner is None or reported is None:
                return inner
            return [_Form(f.leaf, _then(f.fn, reported.apply), self.unit(node)) for f in inner]
        if isinstance(node, ast.UnknownUnless | ast.Clip | ast.Coalesce):
            items = (
                [node.value]
                if isinstance(node, ast.UnknownUnless)
                else [node.item]
                if isinstance(node, ast.Clip)
                else list(node.items)
            )
            out: list[_Form] = []
            for item in items:
                inner = self.forms(item, depth + 1)
                if inner is None:
                    return None
                out += [_Form(f.leaf, self._clipped(node, f.fn), self.unit(node)) for f in inner]
            return out
        if isinstance(node, ast.Arith):
            return self.arith(node, depth)
        return None

    @staticmethod
    def _clipped(node: ast.Node, f: Fn) -> Fn:
        if not isinstance(node, ast.Clip):
            return f
        lo, hi = node.low, node.high

        def clipped(x: float) -> float:
            v = f(x)
            v = min(v, hi) if hi is not None else v
            return max(v, lo) if lo is not None else v

        return clipped

    def arith(self, node: ast.Arith, depth: int) -> list[_Form] | None:
        found = [self.forms(item, depth + 1) for item in node.items]
        if any(f is None for f in found):
            return None
        alternatives = [f for f in found if f is not None]
        first = self.unit(node.items[0])
        scales = [
            _scale(self.unit(item), first) if node.op in ("add", "sub", "min", "max") else _same
            for item in node.items
        ]
        changing = [any(f.leaf is not None for f in alt) for alt in alternatives]
        if node.op in ("min", "max") and sum(changing) > 1:
            # the least (greatest) of several changing numbers crosses a threshold where one of
            # them does: each one's crossings, alone
            return [
                _Form(f.leaf, _then(f.fn, scale), self.unit(node))
                for alt, scale, moving in zip(alternatives, scales, changing, strict=True)
                if moving
                for f in alt
                if f.leaf is not None
            ]
        if sum(changing) > 1 or any(len(alt) > 1 for alt in alternatives):
            return None  # a sum of two changing numbers crosses where their dates say: per patient
        fns = [_then(alt[0].fn, scale) for alt, scale in zip(alternatives, scales, strict=True)]
        op = node.op

        def value(x: float) -> float:
            xs = [g(x) for g in fns]
            if op == "add":
                return sum(xs)
            if op == "sub":
                return xs[0] - sum(xs[1:])
            if op == "mul":
                out = 1.0
                for v in xs:
                    out *= v
                return out
            if op == "div":
                out = xs[0]
                for v in xs[1:]:
                    out /= v  # ZeroDivisionError: caught where the function is read
                return out
            return min(xs) if op == "min" else max(xs)

        leaf = next((alt[0].leaf for alt in alternatives if alt[0].leaf is not None), None)
        return [_Form(leaf, value, self.unit(node))]

    def crossing(self, node: ast.Compare) -> tuple[Crossing, ...] | None:
        if self.rules.types[node.left.nid].kind != "num":
            return None
        left, right = self.forms(node.left), self.forms(node.right)
        if left is None or right is None:
            return None
        moving_left = any(f.leaf is not None for f in left)
        moving_right = any(f.leaf is not None for f in right)
        if moving_left == moving_right:
            return None  # nothing changing, or changing on both sides (patient-dependent)
        constant = right if moving_left else left
        if len(constant) != 1:
            return None
        to_left = _scale(self.unit(node.right), self.unit(node.left))
        try:
            c = constant[0].fn(0.0)
        except (ZeroDivisionError, OverflowError, ValueError):
            return None  # unknown at every moment ('division by zero')
        days: dict[int, set[int]] = {}
        leaves: dict[int, ast.Age | ast.TimeSince] = {}
        for f in left if moving_left else right:
            if f.leaf is not None:
                leaves[f.leaf.nid] = f.leaf
                found = _flip_days(_difference(f.fn, PER_DAYS[f.leaf.unit], c, to_left, moving_left))
                days.setdefault(f.leaf.nid, set()).update(found)
        return tuple(Crossing(leaves[n], tuple(sorted(ds))) for n, ds in days.items())


def _difference(g: Fn, per: float, c: float, to_left: Fn, moving_left: bool) -> Callable[[int], float]:
    """The compared difference (left − right, the right side in the left side's unit) on the
    day ``d`` days after the anchor's date, the count rounded as the evaluators round it."""
    if moving_left:
        return lambda d: g(round(d / per, 6)) - to_left(c)
    return lambda d: c - to_left(g(round(d / per, 6)))


def _same(x: float) -> float:
    return x


def _flip_days(h: Callable[[int], float]) -> tuple[int, ...]:
    """The days (0 … MAX_DAYS) around which ``h(d) ≥ 0`` or ``h(d) > 0`` changes, for a
    monotone ``h``; a day where ``h`` cannot be computed (a division by zero) is kept too."""

    def at(d: int) -> float | None:
        try:
            v = h(d)
        except (ZeroDivisionError, OverflowError, ValueError):
            return None
        return v if v == v else None  # NaN: not computable

    out: set[int] = set()
    lo = 0
    while lo <= 2 and at(lo) is None:  # c / age: undefined on the anchor's own day
        out.update((lo, lo + 1))
        lo += 1
    if at(lo) is None or at(MAX_DAYS) is None:
        return tuple(sorted(out))
    for strict in (False, True):

        def holds(d: int, strict: bool = strict) -> bool:
            v = at(d)
            return v is not None and (v > 0 if strict else v >= 0)

        start, end = holds(lo), holds(MAX_DAYS)
        if start == end:
            continue
        a, b = lo, MAX_DAYS  # holds(a) == start, holds(b) != start
        while b - a > 1:
            mid = (a + b) // 2
            if holds(mid) == start:
                a = mid
            else:
                b = mid
        out.update(d for d in (b - 1, b, b + 1) if 0 <= d <= MAX_DAYS)
    return tuple(sorted(out))


def crossings(rules: RuleSet) -> Callable[[ast.Compare], tuple[Crossing, ...] | None]:
    """A memoised finder of a comparison's crossings (one per age / time_since it reads), for
    one rule set; None when it has none of its own."""
    finder = _Finder(rules)
    memo: dict[int, tuple[Crossing, ...] | None] = {}

    def find(node: ast.Compare) -> tuple[Crossing, ...] | None:
        if node.nid not in memo:
            memo[node.nid] = finder.crossing(node)
        return memo[node.nid]

    return find
