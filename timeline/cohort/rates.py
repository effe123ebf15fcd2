"""Incidence rates with exact (Garwood) Poisson confidence intervals, and the chi-square
quantiles they need, without scipy.

The exact interval for a Poisson count ``k`` (Garwood, Biometrika 1936) is
``[χ²(α/2; 2k) / 2, χ²(1 − α/2; 2k + 2) / 2]`` events (the lower limit 0 when ``k = 0``),
divided by the exposure for a rate. A chi-square quantile of ``ν`` degrees of freedom is twice
the quantile of the gamma distribution of shape ``ν/2``, found here by bisection on the
regularized lower incomplete gamma function ``P(a, x)``, itself computed as in Numerical Recipes
(Press et al., 3rd ed., §6.2): its power series where ``x < a + 1``, else Lentz's continued
fraction for ``Q = 1 − P``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

_EPS = 1e-15  # relative accuracy of the series and the continued fraction
_TINY = 1e-300  # Lentz's guard against a zero denominator
_MAX_TERMS = 10_000


def gamma_p(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x) = γ(a, x) / Γ(a)."""
    if a <= 0:
        raise ValueError(f"gamma_p needs a shape a > 0, not {a}")
    if x <= 0:
        return 0.0
    if math.isinf(x):
        return 1.0
    if x < a + 1:
        return _series(a, x)
    return 1.0 - _continued_fraction(a, x)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = 1 − P(a, x), computed
    directly where P is near 1 (so that its small values keep their precision)."""
    if a <= 0:
        raise ValueError(f"gamma_q needs a shape a > 0, not {a}")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1:
        return 1.0 - _series(a, x)
    return _continued_fraction(a, x)


def _prefactor(a: float, x: float) -> float:
    """e^{−x} x^a / Γ(a), in logarithms (x^a alone overflows for large a)."""
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _series(a: float, x: float) -> float:
    """P(a, x) = e^{−x} x^a / Γ(a) · Σ_{n≥0} x^n / (a (a+1) … (a+n)); converges fast for x < a + 1."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_TERMS):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            return min(1.0, total * _prefactor(a, x))
    raise ArithmeticError(f"gamma_p series did not converge for a={a}, x={x}")


def _continued_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz), for x ≥ a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return max(0.0, _prefactor(a, x) * h)
    raise ArithmeticError(f"gamma_q continued fraction did not converge for a={a}, x={x}")


def gamma_quantile(p: float, a: float) -> float:
    """The x with P(a, x) = p (the p-quantile of the gamma distribution of shape a, scale 1),
    by bisection: P is increasing in x, so the root is bracketed and found to machine precision
    whatever the shape (Newton's steps can leave the bracket in the tails)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"a gamma quantile needs 0 <= p < 1, not {p}")
    if p == 0.0:
        return 0.0
    lo, hi = 0.0, max(a, 1.0)
    while gamma_p(a, hi) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(1100):  # halving from 1 reaches the smallest double in ~1075 steps
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # adjacent floats: nothing left to halve
            break
        if gamma_p(a, mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def chi2_quantile(p: float, df: float) -> float:
    """The p-quantile of the chi-square distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"chi-square needs df > 0, not {df}")
    return 2.0 * gamma_quantile(p, df / 2.0)


@lru_cache(maxsize=4096)  # a report asks for the same small counts in every group
def poisson_limits(events: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Garwood) two-sided interval for the mean of a Poisson count of ``events``:
    each tail holds at most (1 − level)/2."""
    if events < 0:
        raise ValueError(f"a count of events is 0 or more, not {events}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"a confidence level is between 0 and 1, not {level}")
    alpha = 1.0 - level
    lower = 0.0 if events == 0 else gamma_quantile(alpha / 2, events)
    upper = gamma_quantile(1.0 - alpha / 2, events + 1)
    return lower, upper


@dataclass(frozen=True)
class Rate:
    """``events`` over ``exposure_years`` patient-years, per ``per`` patient-years, with the
    exact Poisson interval at ``level``."""

    events: int
    exposure_years: float
    per: float
    level: float
    value: float
    lower: float
    upper: float


def incidence_rate(
    events: int, exposure_years: float, level: float = 0.95, per: float = 100.0
) -> Rate | None:
    """Events per ``per`` patient-years with Garwood's exact interval; None without exposure
    (a rate over no time is not 0, it is not defined)."""
    if exposure_years <= 0:
        return None
    lo, hi = poisson_limits(events, level)
    scale = per / exposure_years
    return Rate(events, exposure_years, per, level, events * scale, lo * scale, hi * scale)


__all__ = [
    "Rate",
    "chi2_quantile",
    "gamma_p",
    "gamma_q",
    "gamma_quantile",
    "incidence_rate",
    "poisson_limits",
]
