"""Comparisons with censored values, for both evaluators.

A censored lab value (``<5``: below the lab's limit of 5; ``>2000``: above the assay's range)
is stored as its bound (5, 2000) and its qualifier (``<``, ``<=``, ``>``, ``>=``). It stands
for a range of numbers, not one: a comparison with it is decided only when every number of
the range decides it the same way (``<5`` is ``le 10`` and not ``gt 10``, but ``le 3`` is
unknown), and is unknown otherwise. An exact value is the range of one number, so the rules
below give the usual answer for two exact values.

A range is ``(lo, lo_open, hi, hi_open)``: ``<5`` is ``(-inf, False, 5, True)``, ``>=2000``
``(2000, False, inf, False)``, the exact 7 ``(7, False, 7, False)``.

:func:`decide` computes it in Python (the replay); :func:`decide_sql` writes the same test as
SQL (the compiler), so the two evaluators agree by construction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

QUALIFIERS = ("<", "<=", ">", ">=")


class Range(NamedTuple):
    lo: float
    lo_open: bool
    hi: float
    hi_open: bool


def of(value: float, qualifier: str | None) -> Range:
    """The range a value stands for: itself, or the numbers beyond its bound."""
    if qualifier is None:
        return Range(value, False, value, False)
    if qualifier in ("<", "<="):
        return Range(-math.inf, False, value, qualifier == "<")
    return Range(value, qualifier == ">", math.inf, False)


def _all_lt(a: Range, b: Range) -> bool:
    """Every number of ``a`` is below every number of ``b``."""
    return a.hi < b.lo or (a.hi == b.lo and (a.hi_open or b.lo_open))


def _all_le(a: Range, b: Range) -> bool:
    return a.hi <= b.lo


def decide(op: str, a: Range, b: Range) -> bool | None:
    """``a op b`` for every pair of their numbers: True, False, or None when some pairs
    compare one way and some the other."""
    yes, no = {
        "gt": (_all_lt(b, a), _all_le(a, b)),
        "ge": (_all_le(b, a), _all_lt(a, b)),
        "lt": (_all_lt(a, b), _all_le(b, a)),
        "le": (_all_le(a, b), _all_lt(b, a)),
        "eq": (_all_le(a, b) and _all_le(b, a), _all_lt(a, b) or _all_lt(b, a)),
        "ne": (_all_lt(a, b) or _all_lt(b, a), _all_le(a, b) and _all_le(b, a)),
    }[op]
    return True if yes else False if no else None


class RangeSql(NamedTuple):
    """A range as four SQL expressions."""

    lo: str
    lo_open: str
    hi: str
    hi_open: str


def of_sql(value: str, qualifier: str | None = None) -> RangeSql:
    """SQL of the range of ``value`` (an expression, rounded as the comparison reads it) with
    the qualifier expression ``qualifier`` (None: always exact)."""
    if qualifier is None:
        return RangeSql(value, "false", value, "false")
    q = qualifier
    return RangeSql(
        f"CASE WHEN {q} IS NULL THEN {value} WHEN {q} IN ('<', '<=') THEN '-infinity'::DOUBLE ELSE {value} END",
        f"coalesce({q} = '>', false)",
        f"CASE WHEN {q} IS NULL THEN {value} WHEN {q} IN ('>', '>=') THEN 'infinity'::DOUBLE ELSE {value} END",
        f"coalesce({q} = '<', false)",
    )


def _all_lt_sql(a: RangeSql, b: RangeSql) -> str:
    return f"({a.hi} < {b.lo} OR ({a.hi} = {b.lo} AND ({a.hi_open} OR {b.lo_open})))"


def _all_le_sql(a: RangeSql, b: RangeSql) -> str:
    return f"({a.hi} <= {b.lo})"


def decide_sql(op: str, a: RangeSql, b: RangeSql) -> str:
    """SQL of :func:`decide`: true, false, or NULL (undecided, or an operand unknown)."""
    yes, no = {
        "gt": (_all_lt_sql(b, a), _all_le_sql(a, b)),
        "ge": (_all_le_sql(b, a), _all_lt_sql(a, b)),
        "lt": (_all_lt_sql(a, b), _all_le_sql(b, a)),
        "le": (_all_le_sql(a, b), _all_lt_sql(b, a)),
        "eq": (
            f"({_all_le_sql(a, b)} AND {_all_le_sql(b, a)})",
            f"({_all_lt_sql(a, b)} OR {_all_lt_sql(b, a)})",
        ),
        "ne": (
            f"({_all_lt_sql(a, b)} OR {_all_lt_sql(b, a)})",
            f"({_all_le_sql(a, b)} AND {_all_le_sql(b, a)})",
        ),
    }[op]
    return f"CASE WHEN {yes} THEN true WHEN {no} THEN false END"


def shown(value: str, qualifier: str | None) -> str:
    """A value as notes and messages write it: ``<5``, ``>=2000``, ``7``."""
    return f"{qualifier or ''}{value}"


def extreme(fn: str, values: list[tuple[float, str | None]]) -> tuple[float, str | None]:
    """The ``min`` or ``max`` of values some of which may be censored, as a value and
    qualifier: exact where every number of the ranges gives the same extreme (the max of
    ``<5`` and 8 is 8), else the range of the extreme, written as one bound (the max of
    ``>5`` and 8 is ``>=8``; of ``<5`` and ``<=7``, ``<=7``). Of the max, the lowest it can be
    is the greatest low end, the highest the greatest high end (min: the least of each); a
    tie takes the open end for the low end of a max (``>5`` and 5 give more than 5) and the
    closed one for its high end (``<5`` and ``<=5`` can give 5), and the converse for a min.

    A range bounded on both sides (the max of ``<10`` and an exact 5 lies in ``[5, 10)``) is
    written as its bound on the censored side (``<10``): a true statement, less exact than
    the range, so that a comparison it leaves undecided (``ge 5``) is unknown. ``values``
    is not empty."""
    rs = [of(v, q) for v, q in values]
    top = fn == "max"
    los = [r.lo for r in rs]
    his = [r.hi for r in rs]
    lo = max(los) if top else min(los)
    hi = max(his) if top else min(his)
    lo_open = any(r.lo_open for r in rs if r.lo == lo) if top else all(r.lo_open for r in rs if r.lo == lo)
    hi_open = all(r.hi_open for r in rs if r.hi == hi) if top else any(r.hi_open for r in rs if r.hi == hi)
    return _written(top, lo, lo_open, hi, hi_open)


def _written(top: bool, lo: float, lo_open: bool, hi: float, hi_open: bool) -> tuple[float, str | None]:
    if lo == hi:
        return lo, None
    # the side that reaches infinity is the censored one; bounded on both, the side a
    # censored value bounds: the high end of a max (a ``<`` value), the low end of a min
    below = hi != math.inf and (lo == -math.inf or top)
    if below:
        return hi, "<" if hi_open else "<="
    return lo, ">" if lo_open else ">="


def extreme_sql(fn: str, value: str, qualifier: str) -> tuple[str, str, str]:
    """SQL aggregates of :func:`extreme` over the rows' ``value`` and ``qualifier``
    expressions: (the exact value or NULL, the qualifier or NULL, the bound or NULL)."""
    r = of_sql(value, qualifier)
    agg = "max" if fn == "max" else "min"
    top = fn == "max"
    lo, hi = f"{agg}({r.lo})", f"{agg}({r.hi})"
    lo_o = f"{agg}({r.lo}) FILTER (WHERE {r.lo_open})"
    lo_c = f"{agg}({r.lo}) FILTER (WHERE NOT {r.lo_open})"
    hi_o = f"{agg}({r.hi}) FILTER (WHERE {r.hi_open})"
    hi_c = f"{agg}({r.hi}) FILTER (WHERE NOT {r.hi_open})"
    if top:  # open at a tie of the low end if any is; closed at the high end if any is
        lo_open = f"coalesce({lo_o} = {lo}, false)"
        hi_open = f"NOT coalesce({hi_c} = {hi}, false)"
        below = f"({hi} != 'infinity'::DOUBLE)"
    else:
        lo_open = f"NOT coalesce({lo_c} = {lo}, false)"
        hi_open = f"coalesce({hi_o} = {hi}, false)"
        below = f"({lo} = '-infinity'::DOUBLE)"
    exact = f"CASE WHEN {lo} = {hi} THEN {lo} END"
    q = f"""CASE WHEN {lo} = {hi} THEN NULL WHEN {below} THEN CASE WHEN {hi_open} THEN '<' ELSE '<=' END
                 ELSE CASE WHEN {lo_open} THEN '>' ELSE '>=' END END"""
    bound = f"CASE WHEN {lo} = {hi} THEN NULL WHEN {below} THEN {hi} ELSE {lo} END"
    return exact, q, bound


def extreme_row_sql(fn: str, items: list[tuple[str, str]]) -> tuple[list[str], tuple[str, str, str]]:
    """SQL of :func:`extreme` over the operands of one row (``min_of``, ``max_of``), each a
    (value, qualifier) pair of expressions (qualifier NULL: exact; every operand has a value
    or a bound): the columns to add in turn, each one projection over the previous
    (``SELECT *, … FROM (…)``, so that no expression is repeated), then (the exact value or
    NULL, the qualifier or NULL, the bound or NULL) over them."""
    top = fn == "max"
    agg = "greatest" if top else "least"
    n = range(len(items))
    # each operand's range: _el (low end), _elx (open there), _eh, _ehx
    ranges = ", ".join(
        f"{r.lo} AS _el{i}, {r.lo_open} AS _elx{i}, {r.hi} AS _eh{i}, {r.hi_open} AS _ehx{i}"
        for i, r in enumerate(of_sql(v, q) for v, q in items)
    )
    # the extreme's range: its ends, then whether each is open at a tie (see extreme)
    ends = (
        f"{agg}({', '.join(f'_el{i}' for i in n)}) AS _elo, {agg}({', '.join(f'_eh{i}' for i in n)}) AS _ehi"
    )

    def any_at(end: str, col: str, open_: bool) -> str:
        """Whether an operand whose end ``col`` is the extreme's ``end`` is open (closed) there."""
        return (
            "(" + " OR ".join(f"({'' if open_ else 'NOT '}{col}x{i} AND {col}{i} = {end})" for i in n) + ")"
        )

    if top:  # open at a tie of the low end if any is; closed at the high end if any is
        lo_open, hi_open = any_at("_elo", "_el", True), f"NOT {any_at('_ehi', '_eh', False)}"
    else:
        lo_open, hi_open = f"NOT {any_at('_elo', '_el', False)}", any_at("_ehi", "_eh", True)
    flags = f"{lo_open} AS _elof, {hi_open} AS _ehif"
    # as _written: the side that reaches infinity is the censored one; bounded on both, the
    # high end of a max, the low end of a min
    below = f"(_ehi != 'infinity'::DOUBLE AND (_elo = '-infinity'::DOUBLE OR {str(top).lower()}))"
    exact = "CASE WHEN _elo = _ehi THEN _elo END"
    q = f"""CASE WHEN _elo = _ehi THEN NULL WHEN {below} THEN CASE WHEN _ehif THEN '<' ELSE '<=' END
                 ELSE CASE WHEN _elof THEN '>' ELSE '>=' END END"""
    bound = f"CASE WHEN _elo = _ehi THEN NULL WHEN {below} THEN _ehi ELSE _elo END"
    return [ranges, ends, flags], (exact, q, bound)
