"""Where a comparison of ``age`` or ``time_since`` with a constant can flip.

``age`` and ``time_since`` count whole calendar days from their anchor event's date to the
date of ``q`` (README, "The language"), in days or divided by the mean month or year: between
two events they step once a day, at midnight, and no event marks the step. A comparison of one
with a constant (``ge: [age, 5]``, ``lt: [{time_since: …}, {param: limit}]``), directly or
through arithmetic with constants, ``min_of`` / ``max_of``, ``clip``, ``coalesce``,
``unknown_unless``, ``pct_change`` and rules that are such numbers, flips on the days the count
crosses the threshold. Those days do not depend on the patient, only on the threshold: they are
found here once per comparison, as numbers of days after the anchor's date, and both
evaluators (the compiler's change points and the replay's candidates) add the midnights around
them after each anchor event.

The compared side is held as a function of the count of days ``d`` (one anchor: ``age`` in
years and in months read the same birth), rounded as the evaluators round (the count
unrounded, 9 digits for arithmetic and comparisons). Most such functions are monotone, so each of
``h ≥ 0`` and ``h > 0`` (``h``: the compared difference) flips at most once and bisection finds
it; one that is not (the count twice in a product, a count in a divisor) is read at every day
from 0 to 200 years. The day before and after each flip are added too, for floating-point
differences between here and the evaluators.

A comparison whose crossing depends on the patient's data — of such a number with a lab, of
two counts from different anchors (``age`` against ``time_since``, or their sum) — is not
covered (README, history).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from timeline.language import ast
from timeline.language.durations import Duration
from timeline.language.loader import RuleSet
from timeline.units import converter

PER_DAYS = {"years": 365.25, "months": 30.4375, "days": 1.0}
MAX_DAYS = 200 * 366  # no duration is longer than 200 years
# unchecked (see ast.BOOL)
BIRTH = ast.Anchor.construct(select=ast.Selector.construct(name="birth", kinds=("birth",)), which="first")

Fn = Callable[[int], float]  # the value on the day d days after the anchor's date


@dataclass(frozen=True)
class Crossing:
    """The comparison can flip on the midnights ``days`` days after the date of ``anchor``'s
    event (the birth for ``age``)."""

    anchor: ast.Anchor
    days: tuple[int, ...]


@dataclass(frozen=True)
class _Form:
    anchor: ast.Anchor | None  # None: a constant
    fn: Fn
    monotone: bool = True


def anchor_of(node: ast.Age | ast.TimeSince) -> ast.Anchor:
    return BIRTH if isinstance(node, ast.Age) else node.anchor


def _arith(op: str, xs: list[float]) -> float:
    """As the evaluators compute it, before their rounding to 9 digits."""
    if op == "add":
        return sum(xs)
    if op == "sub":
        return xs[0] - sum(xs[1:])
    if op == "mul":
        return math.prod(xs)
    if op == "div":
        out = xs[0]
        for v in xs[1:]:
            out /= v  # ZeroDivisionError: an unknown, caught where the function is read
        return out
    return min(xs) if op == "min" else max(xs)


def _pct(x: float, b: float) -> float:
    if b == 0:
        return math.inf if x > 0 else -math.inf if x < 0 else 0.0
    return round((x - b) / abs(b) * 100, 6)


class _Finder:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def unit(self, node: ast.Node) -> str | None:
        return self.rules.types[node.nid].unit

    def forms(self, node: ast.Node, depth: int = 0) -> list[_Form] | None:
        """The node as one or more functions of one anchor's count of days each (or
        constants), one of which is its value at any moment — ``coalesce`` takes one of its
        items, the least of several counts is one of them; None when it is none of these."""
        if depth > 200:
            return None
        if isinstance(node, ast.Const | ast.Param):
            value = (
                node.value
                if isinstance(node, ast.Const)
                else self.rules.rules[node.rule].param(node.name).effective
            )
            if isinstance(value, Duration | bool) or value is None:
                return None
            v = float(value)
            return [_Form(None, lambda _d: v)]
        if isinstance(node, ast.Age | ast.TimeSince):
            per = PER_DAYS[node.unit]
            return [_Form(anchor_of(node), lambda d: d / per)]
        if isinstance(node, ast.RuleRef):
            inner = self.forms(self.rules.rules[node.rule].define, depth + 1)
            reported = self.rules.reported(node.rule)  # the rule's value in its declared unit
            if inner is None or reported is None:
                return inner
            c = reported.apply
            return [_Form(f.anchor, _map(f.fn, lambda x: round(c(x), 9)), f.monotone) for f in inner]
        if isinstance(node, ast.UnknownUnless | ast.Coalesce):
            out: list[_Form] = []
            for item in [node.value] if isinstance(node, ast.UnknownUnless) else node.items:
                inner = self.forms(item, depth + 1)
                if inner is None:
                    return None
                out += inner
            return out
        if isinstance(node, ast.Clip):
            inner = self.forms(node.item, depth + 1)
            if inner is None:
                return None
            lo = -math.inf if node.low is None else node.low
            hi = math.inf if node.high is None else node.high
            return [_Form(f.anchor, _map(f.fn, lambda x: max(min(x, hi), lo)), f.monotone) for f in inner]
        if isinstance(node, ast.Arith):
            scales = [
                converter(self.unit(item), self.unit(node.items[0]))
                if node.op in ("add", "sub", "min", "max")
                else (lambda x: x)
                for item in node.items
            ]
            op = node.op
            return self.combined(node.items, scales, lambda xs: round(_arith(op, xs), 9), op, depth)
        if isinstance(node, ast.PctChange):
            to_value = converter(self.unit(node.baseline), self.unit(node.value))
            return self.combined(
                (node.value, node.baseline),
                [lambda x: x, to_value],
                lambda xs: _pct(xs[0], xs[1]),
                "pct",
                depth,
            )
        return None

    def combined(
        self,
        items: tuple[ast.Node, ...],
        scales: list[Callable[[float], float]],
        combine: Callable[[list[float]], float],
        op: str,
        depth: int,
    ) -> list[_Form] | None:
        found = [self.forms(item, depth + 1) for item in items]
        if any(f is None for f in found):
            return None
        alternatives = [f for f in found if f is not None]
        anchors = {f.anchor for alt in alternatives for f in alt if f.anchor is not None}
        if op in ("min", "max") and len(anchors) > 1:
            # the least (greatest) of counts from different anchors crosses a threshold where
            # one of them does: each one's crossings, alone
            return [
                _Form(f.anchor, _map(f.fn, _rounded(s)), f.monotone)
                for alt, s in zip(alternatives, scales, strict=True)
                for f in alt
                if f.anchor is not None
            ]
        several = [i for i, alt in enumerate(alternatives) if len(alt) > 1]
        if len(several) > 1:
            return None
        # one item that is one of several (a coalesce): the combination with each of them
        choices = [[alt[0]] for alt in alternatives]
        combos: list[list[_Form]] = []
        for pick in alternatives[several[0]] if several else [alternatives[0][0]]:
            if several:
                choices[several[0]] = [pick]
            combos.append([c[0] for c in choices])
        out = []
        for combo in combos:
            if len({f.anchor for f in combo if f.anchor is not None}) > 1:
                return None  # counts from two anchors: the crossing depends on the patient's dates
            fns = [f.fn for f in combo]
            anchor = next((f.anchor for f in combo if f.anchor is not None), None)
            count = sum(1 for f in combo if f.anchor is not None)
            monotone = all(f.monotone for f in combo) and (count <= 1 if op not in ("min", "max") else True)
            if op == "div" and any(f.anchor is not None for f in combo[1:]):
                monotone = False  # a count in a divisor: a pole where the divisor is 0
            if op == "pct" and combo[1].anchor is not None:
                monotone = False
            out.append(_Form(anchor, _combined(fns, scales, combine), monotone))
        return out

    def crossing(self, node: ast.Compare) -> tuple[Crossing, ...] | None:
        if self.rules.types[node.left.nid].kind != "num":
            return None
        left, right = self.forms(node.left), self.forms(node.right)
        if left is None or right is None:
            return None
        moving_left = any(f.anchor is not None for f in left)
        moving_right = any(f.anchor is not None for f in right)
        if moving_left == moving_right:
            return None  # nothing changing, or changing on both sides (patient-dependent)
        constant = right if moving_left else left
        if len(constant) != 1:
            return None
        to_left = converter(self.unit(node.right), self.unit(node.left))
        try:
            c = constant[0].fn(0)
        except (ZeroDivisionError, OverflowError, ValueError):
            return None  # unknown at every moment ('division by zero')
        days: dict[ast.Anchor, set[int]] = {}
        for f in left if moving_left else right:
            if f.anchor is None:
                continue
            h = _difference(f.fn, c, to_left, moving_left)
            days.setdefault(f.anchor, set()).update(_flip_days(h) if f.monotone else _scan_days(h))
        return tuple(Crossing(a, tuple(sorted(ds))) for a, ds in days.items())


def _map(g: Fn, f: Callable[[float], float]) -> Fn:
    return lambda d: f(g(d))


def _rounded(s: Callable[[float], float]) -> Callable[[float], float]:
    return lambda x: round(s(x), 9)


def _combined(
    fns: list[Fn], scales: list[Callable[[float], float]], combine: Callable[[list[float]], float]
) -> Fn:
    return lambda d: combine([s(g(d)) for g, s in zip(fns, scales, strict=True)])


def _difference(g: Fn, c: float, to_left: Callable[[float], float], moving_left: bool) -> Fn:
    """The compared difference on day ``d``: left − right, the right side in the left side's
    unit, each rounded to 9 digits as the evaluators compare."""
    if moving_left:
        rhs = round(to_left(c), 9)
        return lambda d: round(g(d), 9) - rhs
    lhs = round(c, 9)
    return lambda d: lhs - round(to_left(g(d)), 9)


def _reader(h: Fn) -> Callable[[int], float | None]:
    def at(d: int) -> float | None:
        try:
            v = h(d)
        except (ZeroDivisionError, OverflowError, ValueError):
            return None
        return v if v == v else None  # NaN: not computable

    return at


def _around(flips: set[int]) -> set[int]:
    return {k for d in flips for k in (d - 1, d, d + 1) if 0 <= k <= MAX_DAYS}


def _flip_days(h: Fn) -> set[int]:
    """The days (0 … MAX_DAYS) around which ``h(d) ≥ 0`` or ``h(d) > 0`` changes, for a
    monotone ``h``; a day where ``h`` cannot be computed (a division by zero) is kept too."""
    at = _reader(h)
    out: set[int] = set()
    lo = 0
    while lo <= 2 and at(lo) is None:  # c / age: undefined on the anchor's own day
        out.update((lo, lo + 1))
        lo += 1
    if at(lo) is None or at(MAX_DAYS) is None:
        return out | _scan_days(h)  # undefined somewhere else: not the monotone case
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
        out |= _around({b})
    return out


def _scan_days(h: Fn) -> set[int]:
    """Every day (0 … MAX_DAYS) around which the sign of ``h`` (or whether it can be computed)
    changes: for a function that is not monotone, read day by day (~0.1 s)."""
    at = _reader(h)
    flips: set[int] = set()
    previous: tuple[bool, bool, bool] | None = None
    for d in range(MAX_DAYS + 1):
        v = at(d)
        state = (False, False, False) if v is None else (True, v >= 0, v > 0)
        if previous is not None and state != previous:
            flips.add(d)
        previous = state
    return _around(flips)


def crossings(rules: RuleSet) -> Callable[[ast.Compare], tuple[Crossing, ...] | None]:
    """A memoised finder of a comparison's crossings (one per anchor it counts from), for one
    rule set; None when it has none of its own."""
    finder = _Finder(rules)
    memo: dict[int, tuple[Crossing, ...] | None] = {}

    def find(node: ast.Compare) -> tuple[Crossing, ...] | None:
        if node.nid not in memo:
            memo[node.nid] = finder.crossing(node)
        return memo[node.nid]

    return find
