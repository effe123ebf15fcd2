"""Kaplan–Meier product-limit estimates: survival steps, number at risk, median, and their
confidence intervals.

Times are in days from the index. At a time with both events and censorings, the events
come first (the usual convention: a patient censored at t was still at risk at t). Times are
ordered and tied by their exact values and shown to 4 decimals: a patient censored at the end
of day X (1 µs before midnight) shows at X + 1, as an event at that midnight does, yet has left
the risk set before it.

Confidence intervals (docs/cohorts.md, "Confidence intervals"): the variance of log S(t) is
Greenwood's, Σ d / (r (r − d)) over the event times up to t, and the pointwise interval is
built on the log(−log S) scale (Kalbfleisch & Prentice 1980, §1.3; Collett, *Modelling
Survival Data in Medical Research*, 3rd ed., §2.2.3) — the default of SAS PROC LIFETEST and
Stata's `sts` — which always lies within [0, 1]; R survfit's default, the log scale, is
``transform="log"``. The median's interval is Brookmeyer & Crowley's (Biometrics 1982): the
times at which the pointwise interval contains 1/2, read off the lower and upper limits as
R's survfit and SAS do.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Protocol, TypeVar

TRANSFORMS = ("log-log", "log")
HALF = 0.5 + 1e-12  # S "at or below 1/2", up to rounding (R's tolerance is ~1.5e-8)


@dataclass(frozen=True)
class Step:
    time: float
    at_risk: int  # patients still at risk just before ``time``
    events: int
    censored: int
    survival: float  # S(t): probability of not having reached the outcome by ``time``
    # Greenwood's Σ d / (r (r − d)) up to ``time``: the variance of log S(t); inf once S = 0
    greenwood: float = 0.0

    @property
    def std_err(self) -> float | None:
        """Greenwood's standard error of S(t): S · √Σ (None once S is 0, where it is not defined)."""
        if math.isinf(self.greenwood):
            return None
        return self.survival * math.sqrt(self.greenwood)

    def ci(self, level: float = 0.95, transform: str = "log-log") -> tuple[float, float] | None:
        """The pointwise interval for S(t); see :func:`survival_ci`."""
        return survival_ci(self.survival, self.greenwood, level, transform)


@lru_cache(maxsize=16)
def z_value(level: float) -> float:
    """The standard normal quantile of a two-sided interval at ``level`` (1.959964 at 0.95)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"a confidence level is between 0 and 1, not {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def survival_ci(
    s: float, greenwood: float, level: float = 0.95, transform: str = "log-log"
) -> tuple[float, float] | None:
    """The ``level`` interval for a Kaplan–Meier S with Greenwood sum ``greenwood`` (the
    variance of log S). None where there is none: S = 1 (no event yet: Greenwood's variance is
    0, and [1, 1] would claim certainty from no events) and S = 0 (the last patient at risk had
    the event: the variance is not defined), as R's survfit gives NA there.

    log-log: S^exp(±z σ / log S), σ = √greenwood; log: S·exp(±z σ), the upper limit cut at 1."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform is {' or '.join(TRANSFORMS)}, not {transform!r}")
    if not 0.0 < s < 1.0 or not math.isfinite(greenwood):
        return None
    z, sigma = z_value(level), math.sqrt(greenwood)
    if transform == "log":
        return s * math.exp(-z * sigma), min(1.0, s * math.exp(z * sigma))
    power = math.exp(z * sigma / -math.log(s))  # > 1: S^power is below S
    return s**power, s ** (1.0 / power)


class _Timed(Protocol):
    @property
    def time(self) -> float: ...


_S = TypeVar("_S", bound=_Timed)


def last_step_at(steps: Sequence[_S], t: float) -> _S | None:
    """The last of ``steps`` (in time order) at or before ``t``; None before the first."""
    i = bisect.bisect_right(steps, t, key=lambda step: step.time)
    return steps[i - 1] if i else None


def first_at_or_below_half(points: Sequence[tuple[float, float]]) -> float | None:
    """The first time whose value is at or below 1/2, of (time, value) pairs in time order at
    which a step function changes; where it is exactly 1/2 until the next change, the middle of
    that stretch (R's survfit, SAS's LIFETEST). None when it never gets there."""
    for i, (t, v) in enumerate(points):
        if v <= HALF:
            if abs(v - 0.5) <= 1e-12 and i + 1 < len(points):
                return round((t + points[i + 1][0]) / 2, 4)
            return t
    return None


@dataclass(frozen=True)
class Curve:
    steps: tuple[Step, ...]
    n: int

    def survival_at(self, t: float) -> float:
        """S(t), right-continuous: steps at exactly ``t`` count."""
        step = last_step_at(self.steps, t)
        return step.survival if step is not None else 1.0

    def step_at(self, t: float) -> Step | None:
        """The last step at or before ``t`` (None before the first): S(t) and its variance."""
        return last_step_at(self.steps, t)

    def survival_ci_at(
        self, t: float, level: float = 0.95, transform: str = "log-log"
    ) -> tuple[float, float] | None:
        """The pointwise interval for S(t) (right-continuous, as :meth:`survival_at`); after the
        last time, the last step's (the estimate is carried as it is). None where S(t) is 1 or 0."""
        step = self.step_at(t)
        return step.ci(level, transform) if step is not None else None

    def reached_by(self, t: float) -> float:
        """1 − S(t): the estimated proportion reaching the outcome by ``t``."""
        return 1.0 - self.survival_at(t)

    def at_risk(self, t: float) -> int:
        """Number still at risk at ``t`` (not yet reached, not censored before ``t``)."""
        gone = sum(st.events + st.censored for st in self.steps if st.time < t)
        return self.n - gone

    def median(self) -> float | None:
        """The first time at which S(t) ≤ 0.5; None when the curve never gets there. Where S is
        exactly 0.5 until a later event, the middle of that flat stretch (as R's survfit and
        SAS's LIFETEST take it: helper 49, 62 days where they give 62.5)."""
        return first_at_or_below_half([(st.time, st.survival) for st in self.steps if st.events])

    def median_ci(self, level: float = 0.95, transform: str = "log-log") -> tuple[float | None, float | None]:
        """Brookmeyer–Crowley limits for the median: the first event time at which the lower
        pointwise limit is at or below 1/2, and the first at which the upper one is (each None,
        "NA", when it never is: the data do not bound the median on that side). Event times
        without an interval (S = 0) are passed over, as R's survfit does."""
        lower: list[tuple[float, float]] = []
        upper: list[tuple[float, float]] = []
        for st in self.steps:
            ci = st.ci(level, transform) if st.events else None
            if ci is not None:
                lower.append((st.time, ci[0]))
                upper.append((st.time, ci[1]))
        return first_at_or_below_half(lower), first_at_or_below_half(upper)


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> Curve:
    """The product-limit estimate from each patient's time and whether it was an event
    (True) or a censoring (False)."""
    if len(times) != len(events):
        raise ValueError("times and events differ in length")
    pairs = sorted(zip(times, events, strict=True))
    n = len(pairs)
    at_risk = n
    s = 1.0
    greenwood = 0.0
    steps: list[Step] = []
    i = 0
    while i < n:
        t = pairs[i][0]
        d = c = 0
        while i < n and pairs[i][0] == t:
            if pairs[i][1]:
                d += 1
            else:
                c += 1
            i += 1
        if d:
            s *= 1.0 - d / at_risk
            greenwood = greenwood + d / (at_risk * (at_risk - d)) if d < at_risk else math.inf
        steps.append(
            Step(time=round(t, 4), at_risk=at_risk, events=d, censored=c, survival=s, greenwood=greenwood)
        )
        at_risk -= d + c
    return Curve(steps=tuple(steps), n=n)


__all__ = ["TRANSFORMS", "Curve", "Step", "kaplan_meier", "survival_ci", "z_value"]
