"""A small, exact subset of UCUM: enough for the units clinical labs report.

A unit string such as ``mg/dL``, ``10*9/L``, ``10*3/uL``, ``mmol/L``, ``[degF]`` or
``{score}`` is parsed into a scale factor and a dimension vector. Two units convert
when their dimensions match; amount of substance converts to mass when the analyte's
molar mass is known. Temperatures convert affinely. The result is a linear map
``canonical = value * scale + offset`` so conversions run vectorised in SQL.

Each unit's factor is also kept as an exact rational (a month is 2,629,800 s, 487/16 of a
day; a milligram 1/1000 of a gram; a molar mass the decimal it is written as), so a
conversion without an offset is an exact ratio ``num/den`` of two whole numbers. The rule
engines convert by it (``value * num / den``): 183 days in months is 183 × 16 / 487, the very
number ``time_since`` counts on day 183 (183 / 30.4375), where the rounded ``scale``
(0.0328542094456) differs from it in the 13th digit, and a comparison on the boundary day could
come out the wrong way. Ingest keeps converting by ``scale`` (the values it stores).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

# Dimension order: mass, length, time, amount, enzyme activity, temperature.
Dim = tuple[int, int, int, int, int, int]
_ZERO: Dim = (0, 0, 0, 0, 0, 0)

_PREFIXES: dict[str, float] = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6,
    "k": 1e3, "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6,
    "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18,
}  # fmt: skip

# atom -> (factor to the base unit, dimension, may take a prefix)
_ATOMS: dict[str, tuple[float, Dim, bool]] = {
    "g": (1.0, (1, 0, 0, 0, 0, 0), True),
    "m": (1.0, (0, 1, 0, 0, 0, 0), True),
    "L": (1e-3, (0, 3, 0, 0, 0, 0), True),
    "l": (1e-3, (0, 3, 0, 0, 0, 0), True),
    "s": (1.0, (0, 0, 1, 0, 0, 0), True),
    "min": (60.0, (0, 0, 1, 0, 0, 0), False),
    "h": (3600.0, (0, 0, 1, 0, 0, 0), False),
    "d": (86400.0, (0, 0, 1, 0, 0, 0), False),
    "wk": (604800.0, (0, 0, 1, 0, 0, 0), False),
    "mo": (2629800.0, (0, 0, 1, 0, 0, 0), False),  # mean Julian month
    "a": (31557600.0, (0, 0, 1, 0, 0, 0), False),  # Julian year
    "mol": (1.0, (0, 0, 0, 1, 0, 0), True),
    "U": (1.0, (0, 0, 0, 0, 1, 0), True),
    "[IU]": (1.0, (0, 0, 0, 0, 1, 0), True),
    "K": (1.0, (0, 0, 0, 0, 0, 1), False),
    "[lb_av]": (453.59237, (1, 0, 0, 0, 0, 0), False),
    "[oz_av]": (28.349523125, (1, 0, 0, 0, 0, 0), False),
    "[in_i]": (0.0254, (0, 1, 0, 0, 0, 0), False),
    "[ft_i]": (0.3048, (0, 1, 0, 0, 0, 0), False),
    "%": (0.01, _ZERO, False),
    "1": (1.0, _ZERO, False),
}

# Units with an offset are only allowed on their own, never in a product.
_AFFINE: dict[str, tuple[float, float]] = {  # unit -> (scale, offset) to kelvin
    "K": (1.0, 0.0),
    "Cel": (1.0, 273.15),
    "[degF]": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
}

# the largest whole number a double holds exactly: a ratio of two such numbers converts exactly
_EXACT = 2**53


def _exact(x: float) -> Fraction:
    """The decimal a factor above is written as (1e-3: 1/1000, not the double nearest it)."""
    return Fraction(repr(x))


_TOKEN = re.compile(r"\{[^{}]*\}|10[*^][+-]?\d+|\[[^\]]+\]|[A-Za-z%]+|\d+|[./()+-]")


class UnitError(ValueError):
    """A unit string is not valid UCUM (in the subset this tool understands)."""


@dataclass(frozen=True)
class ParsedUnit:
    factor: float
    dim: Dim
    exact: Fraction = Fraction(1)  # the factor as an exact rational


@dataclass(frozen=True)
class Conversion:
    """``to_value = from_value * scale + offset``; where ``ratio`` is given (no offset), exactly
    ``from_value * num / den`` (``scale`` is that ratio to 12 digits)."""

    scale: float
    offset: float = 0.0
    ratio: tuple[int, int] | None = None

    def apply(self, value: float) -> float:
        if self.ratio is not None:
            num, den = self.ratio
            return float(value) * num / den
        return value * self.scale + self.offset

    def sql(self, x: str) -> str:
        """The conversion of the SQL expression ``x`` (a DOUBLE), computed as :meth:`apply`
        computes it (DuckDB's doubles round as Python's)."""
        if self.ratio is not None:
            num, den = self.ratio
            if den == 1:
                return f"({x} * {num}::DOUBLE)"
            return f"({x} * {num}::DOUBLE / {den}::DOUBLE)"
        return f"({x} * {_sql_num(self.scale)} + {_sql_num(self.offset)})"

    @property
    def identity(self) -> bool:
        return self.ratio == (1, 1) or (self.ratio is None and (self.scale, self.offset) == (1.0, 0.0))


def _sql_num(x: float) -> str:
    return f"{x!r}::DOUBLE"


# Spellings of units that are not UCUM, as records and habits write them, and UCUM's: the hint
# an error about one of them gives ("lb": UCUM writes [lb_av]).
_SPELLINGS = {
    "degF": "[degF]", "°F": "[degF]", "F°": "[degF]", "degC": "Cel", "°C": "Cel", "C°": "Cel",
    "lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]", "pounds": "[lb_av]", "oz": "[oz_av]",
    "in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]", "ft": "[ft_i]", "feet": "[ft_i]",
    "mcg": "ug", "µg": "ug", "μg": "ug", "IU": "[IU]", "iu": "[IU]", "cc": "mL",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "minute": "min", "minutes": "min", "mins": "min",
    "sec": "s", "secs": "s", "day": "d", "days": "d", "week": "wk", "weeks": "wk",
    "month": "mo", "months": "mo", "year": "a", "years": "a", "yr": "a", "yrs": "a",
    "kgs": "kg", "gm": "g", "gms": "g", "bpm": "/min",
    "C": "Cel", "cel": "Cel", "CEL": "Cel", "℃": "Cel", "deg C": "Cel", "degrees C": "Cel", "°c": "Cel",
    "F": "[degF]", "℉": "[degF]", "deg F": "[degF]", "degrees F": "[degF]",
    # a count per volume: G/L (giga per litre, as French labs write it), T/L; "cells" is no unit
    "G": "10*9", "T": "10*12",
    # UCUM is case-sensitive (Mg is a megagram)
    "Kg": "kg", "KG": "kg", "MG": "mg", "DL": "dL", "mg%": "mg/dL",
}  # fmt: skip
# words that are no unit, left out of a compound unit's UCUM spelling (cells/uL is /uL)
_WORDS = {"cells": "", "cell": "", "Cells": ""}
# in a compound unit, K or k for thousands (K/uL, a count of 10*3 per microlitre: UCUM reads K
# as kelvin)
_THOUSANDS = {"K": "10*3", "k": "10*3"}
# a power of ten as lab reports print it: x10³, ×10^9, 10E3
_POWER = re.compile(r"^[x×*]?\s*10\s*(?:\^|\*\*|\*|E|e)?\s*([⁰¹²³⁴⁵⁶⁷⁸⁹]+|\d+)$")
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def ucum_spelling(symbol: str) -> str:
    """UCUM's spelling of a unit symbol written another way (``hours``: ``h``; a micro sign or
    Greek mu for ``u``: ``µmol`` is ``umol``; ``x10³`` is ``10*3``), else the symbol."""
    if symbol in _SPELLINGS:
        return _SPELLINGS[symbol]
    if symbol[:1] in ("µ", "μ") and len(symbol) > 1:
        return "u" + ucum_spelling(symbol[1:])
    m = _POWER.match(symbol)
    if m and symbol != f"10*{m.group(1)}":
        return f"10*{m.group(1).translate(_SUPERSCRIPTS)}"
    return symbol


def ucum_hint(unit: str) -> str:
    """``; UCUM writes it '[degF]'`` for a unit written another way (each part of a compound
    unit: ``mcg/kg`` is ``ug/kg``, ``K/µL`` is ``10*3/uL``), else ""."""
    text = unit.strip()
    parts = [p.strip() for p in re.split(r"([./])", text)]
    compound = len(parts) > 1
    fixed = "".join({**_THOUSANDS, **_WORDS}.get(p, p) if compound else p for p in map(ucum_spelling, parts))
    return f"; UCUM writes it {fixed!r}" if fixed not in (text, "") else ""


def _atom(sym: str) -> tuple[float, Dim, Fraction]:
    if sym in _ATOMS:
        f, d, _ = _ATOMS[sym]
        return f, d, _exact(f)
    for plen in (2, 1):
        prefix, rest = sym[:plen], sym[plen:]
        if prefix in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
            f, d, _ = _ATOMS[rest]
            return _PREFIXES[prefix] * f, d, _exact(_PREFIXES[prefix]) * _exact(f)
    raise UnitError(f"unknown unit symbol {sym!r}")


def _mul(a: ParsedUnit, b: ParsedUnit, sign: int) -> ParsedUnit:
    factor = a.factor * (b.factor if sign > 0 else 1.0 / b.factor)
    dim = tuple(x + sign * y for x, y in zip(a.dim, b.dim, strict=True))
    return ParsedUnit(factor, dim, a.exact * (b.exact if sign > 0 else 1 / b.exact))  # type: ignore[arg-type]


def _pow(u: ParsedUnit, n: int) -> ParsedUnit:
    return ParsedUnit(u.factor**n, tuple(x * n for x in u.dim), u.exact**n)  # type: ignore[arg-type]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = _TOKEN.findall(text)
        if "".join(self.tokens) != text:
            raise UnitError(f"{text!r} is not a UCUM unit")
        self.i = 0
        self.numbers: list[int] = []  # bare numbers used as factors (10.9/L: [10, 9])

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok: str = self.tokens[self.i]
        self.i += 1
        return tok

    def term(self) -> ParsedUnit:
        if self.peek() == "/":
            self.take()
            result = _mul(ParsedUnit(1.0, _ZERO), self.component(), -1)
        else:
            result = self.component()
        while self.peek() in (".", "/"):
            op = self.take()
            result = _mul(result, self.component(), 1 if op == "." else -1)
        return result

    def component(self) -> ParsedUnit:
        tok = self.peek()
        if tok is None:
            raise UnitError(f"{self.text!r} ends too early")
        self.take()
        if tok == "(":
            inner = self.term()
            if self.peek() != ")":
                raise UnitError(f"{self.text!r} has an unclosed parenthesis")
            self.take()
            return inner
        if tok.startswith("{"):
            return ParsedUnit(1.0, _ZERO)
        if tok[:3] in ("10*", "10^"):
            return ParsedUnit(10.0 ** int(tok[3:]), _ZERO, Fraction(10) ** int(tok[3:]))
        if tok.isdigit():
            self.numbers.append(int(tok))
            return ParsedUnit(float(tok), _ZERO, Fraction(int(tok)))
        factor, dim, exact = _atom(tok)
        unit = ParsedUnit(factor, dim, exact)
        # an annotation may follow an atom: mg{total}
        if self.peek() is not None and self.peek().startswith("{"):  # type: ignore[union-attr]
            self.take()
        exp = self._exponent()
        return _pow(unit, exp) if exp != 1 else unit

    def _exponent(self) -> int:
        sign = 1
        if self.peek() in ("+", "-") and self.i + 1 < len(self.tokens) and self.tokens[self.i + 1].isdigit():
            sign = -1 if self.take() == "-" else 1
        if self.peek() is not None and self.peek().isdigit():  # type: ignore[union-attr]
            return sign * int(self.take())
        return 1


@lru_cache(maxsize=1024)
def parse(unit: str) -> ParsedUnit:
    """Parse a UCUM unit (without offset units) into factor and dimension."""
    try:
        return _parse(unit)
    except UnitError as exc:
        raise UnitError(f"{exc}{ucum_hint(unit)}") from None


def _parse(unit: str) -> ParsedUnit:
    text = unit.strip()
    if not text:
        raise UnitError("empty unit")
    if text in _AFFINE:
        raise UnitError(f"{text!r} has an offset and cannot be combined")
    parser = _Parser(text)
    result = parser.term()
    if parser.peek() is not None:
        raise UnitError(f"{text!r} is not a UCUM unit (unexpected {parser.peek()!r})")
    return result


def odd_factor(unit: str) -> int | None:
    """A bare number in a unit that is not a power of ten (``10.9/L`` → 9), or None.

    UCUM reads a number in a unit as a factor, so ``10.9/L`` is 90 per litre: valid, and
    nearly always a typo for ``10*9/L``. Clinical labs' units scale by powers of ten only
    (``/100{WBCs}``); an exponent (``mm3``) is not a factor."""
    text = unit.strip()
    if text in _AFFINE:
        return None
    parser = _Parser(text)
    parser.term()
    return next((n for n in parser.numbers if n < 1 or 10 ** (len(str(n)) - 1) != n), None)


class _Symbols(_Parser):
    """The same grammar read symbolically: each atom (with its prefix and annotation) or
    number, to its exponent, so that a product of units can cancel what it divides by."""

    def sym_term(self) -> dict[str, int]:
        if self.peek() == "/":
            self.take()
            result = _scale({}, self.sym_component(), -1)
        else:
            result = self.sym_component()
        while self.peek() in (".", "/"):
            op = self.take()
            result = _scale(result, self.sym_component(), 1 if op == "." else -1)
        return result

    def sym_component(self) -> dict[str, int]:
        tok = self.peek()
        if tok is None:
            raise UnitError(f"{self.text!r} ends too early")
        self.take()
        if tok == "(":
            inner = self.sym_term()
            if self.peek() != ")":
                raise UnitError(f"{self.text!r} has an unclosed parenthesis")
            self.take()
            return inner
        if tok == "1":
            return {}
        if tok.startswith("{") or tok[:3] in ("10*", "10^") or tok.isdigit():
            return {tok: 1}
        _atom(tok)  # a known atom, or UnitError
        if self.peek() is not None and self.peek().startswith("{"):  # type: ignore[union-attr]
            tok += self.take()
        return {tok: self._exponent()}


def _scale(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    out = dict(a)
    for sym, n in b.items():
        out[sym] = out.get(sym, 0) + sign * n
    return out


def combine(units: list[str], op: str) -> str:
    """The unit of a product (``op="mul"``) or quotient (``"div"``, left to right) of numbers
    in ``units``, as UCUM with what cancels cancelled: mg/kg/d times d is ``mg/kg`` (the same
    factor and dimension as ``(mg/kg/d).(d)``, which a reader should not have to decode).
    Symbols cancel only when written alike (``h`` and ``d`` stay apart). A unit this cannot
    read (an offset unit) keeps the bracketed form."""
    try:
        total: dict[str, int] = {}
        for i, unit in enumerate(units):
            parser = _Symbols(unit.strip())
            syms = parser.sym_term()
            if parser.peek() is not None:
                raise UnitError(f"{unit!r} is not a UCUM unit")
            total = _scale(total, syms, 1 if op == "mul" or i == 0 else -1)
    except UnitError:
        return ("." if op == "mul" else "/").join(f"({u})" for u in units)

    def power(sym: str, n: int) -> list[str]:
        if n == 1:
            return [sym]
        if sym.startswith("{") or sym[:1].isdigit():  # UCUM gives no exponent to a factor
            return [sym] * n
        return [f"{sym}{n}"]

    top = [p for s, n in total.items() if n > 0 for p in power(s, n)]
    bottom = [p for s, n in total.items() if n < 0 for p in power(s, -n)]
    if not top and not bottom:
        return "1"
    return ".".join(top or ["1"]) + "".join(f"/{b}" for b in bottom)


def converter(from_unit: str | None, to_unit: str | None) -> Callable[[float], float]:
    """A number's conversion between the units of two typed expressions; where a side has no
    unit (None) or one not known at load time ("?"), nothing is converted."""
    if from_unit in (None, "?") or to_unit in (None, "?") or from_unit == to_unit:
        return _identity
    assert from_unit is not None and to_unit is not None
    return conversion(from_unit, to_unit).apply


def _identity(x: float) -> float:
    return x


@lru_cache(maxsize=1024)
def conversion(from_unit: str, to_unit: str, molar_mass: float | None = None) -> Conversion:
    """The linear map from one unit to another, or ``UnitError`` if they do not convert.

    ``molar_mass`` (g/mol) lets amount of substance convert to mass (mmol/L -> mg/dL).
    """
    src, dst = from_unit.strip(), to_unit.strip()
    if src == dst:
        return Conversion(1.0, ratio=(1, 1))
    if src in _AFFINE or dst in _AFFINE:
        if src in _AFFINE and dst in _AFFINE:
            s1, o1 = _AFFINE[src]
            s2, o2 = _AFFINE[dst]
            return Conversion(s1 / s2, (o1 - o2) / s2)
        raise UnitError(f"cannot convert {src!r} to {dst!r}{ucum_hint(src) or ucum_hint(dst)}")
    a, b = parse(src), parse(dst)
    if a.dim != b.dim and molar_mass is not None and (a.dim[3] or b.dim[3]):
        # either side in an amount of substance: mmol/L to mg/dL, and mg/dL to mmol/L
        a, b = _as_mass(a, molar_mass), _as_mass(b, molar_mass)
    ratio: tuple[int, int] | None = None
    if a.dim == b.dim:
        exact = a.exact / b.exact
        if exact.numerator <= _EXACT and exact.denominator <= _EXACT:
            ratio = (exact.numerator, exact.denominator)
    if a.dim != b.dim:  # K/uL: kelvin per microlitre, as UCUM reads it
        raise UnitError(f"cannot convert {src!r} to {dst!r} (different dimensions){ucum_hint(src)}")
    return Conversion(_tidy(a.factor / b.factor), ratio=ratio)


def _as_mass(u: ParsedUnit, molar_mass: float) -> ParsedUnit:
    """``u`` with its amount of substance read as the mass of it (1 mol is ``molar_mass`` g)."""
    amount = u.dim[3]
    if amount == 0:
        return u
    dim: Dim = (u.dim[0] + amount, u.dim[1], u.dim[2], 0, u.dim[4], u.dim[5])
    return ParsedUnit(u.factor * molar_mass**amount, dim, u.exact * _exact(molar_mass) ** amount)


def by_molar_mass(from_unit: str, to_unit: str) -> bool:
    """Whether the two units convert only by a molar mass: one is an amount of substance
    (mmol/L) and the other the mass of it (mg/dL)."""
    try:
        conversion(from_unit, to_unit)
    except UnitError:
        try:
            conversion(from_unit, to_unit, 1.0)
        except UnitError:
            return False
        return True
    return False


def _tidy(x: float) -> float:
    """Round away binary noise (10*3/uL -> 10*9/L must be exactly 1, not 0.999...)."""
    return float(f"{x:.12g}")


def is_valid(unit: str) -> bool:
    try:
        if unit.strip() not in _AFFINE:
            parse(unit)
    except UnitError:
        return False
    return True


def display_unit(unit: str | None) -> str | None:
    """A UCUM unit as a reader writes it beside a number, in notes and on the terminal: none
    for a pure number (``1``, ``{score}``), an annotation without its braces (``{joints}`` →
    joints), years for ``a``. Data (JSON, CSV, the store) keeps the UCUM code."""
    if not unit or unit in ("1", "?", "{score}"):
        return None
    if unit == "a":
        return "years"
    if unit.startswith("{") and unit.endswith("}"):
        return unit[1:-1]
    return unit
