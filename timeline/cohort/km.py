"""Kaplan–Meier product-limit estimates: survival steps, number at risk, median.

Times are in days from the index. At a time with both events and censorings, the events
come first (the usual convention: a patient censored at t was still at risk at t). Times are
ordered and tied by their exact values and shown to 4 decimals: a patient censored at the end
of day X (1 µs before midnight) shows at X + 1, as an event at that midnight does, yet has left
the risk set before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    time: float
    at_risk: int  # patients still at risk just before ``time``
    events: int
    censored: int
    survival: float  # S(t): probability of not having reached the outcome by ``time``


@dataclass(frozen=True)
class Curve:
    steps: tuple[Step, ...]
    n: int

    def survival_at(self, t: float) -> float:
        """S(t), right-continuous: steps at exactly ``t`` count."""
        s = 1.0
        for step in self.steps:
            if step.time > t:
                break
            s = step.survival
        return s

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
        for i, step in enumerate(self.steps):
            if step.survival <= 0.5 + 1e-12:
                if abs(step.survival - 0.5) <= 1e-12:
                    later = next((s.time for s in self.steps[i + 1 :] if s.events), None)
                    if later is not None:
                        return round((step.time + later) / 2, 4)
                return step.time
        return None


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> Curve:
    """The product-limit estimate from each patient's time and whether it was an event
    (True) or a censoring (False)."""
    if len(times) != len(events):
        raise ValueError("times and events differ in length")
    pairs = sorted(zip(times, events, strict=True))
    n = len(pairs)
    at_risk = n
    s = 1.0
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
        steps.append(Step(time=round(t, 4), at_risk=at_risk, events=d, censored=c, survival=s))
        at_risk -= d + c
    return Curve(steps=tuple(steps), n=n)


__all__ = ["Curve", "Step", "kaplan_meier"]
