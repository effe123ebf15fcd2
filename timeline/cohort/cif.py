"""Aalen–Johansen cumulative incidence with competing events, and its confidence intervals.

Where another event ends a patient's chance of reaching the outcome (death; stopping the study
drug, for an outcome that requires it), treating it as a censoring makes 1 − Kaplan–Meier
estimate the proportion had that event not existed, which overstates the proportion that
reached the outcome (Putter, Fiocco & Geskus, *Stat Med* 2007;26:2389). The cumulative incidence
function (CIF) counts it as what it is:

    F(t) = Σ_{t_i ≤ t} S(t_{i−1}) · d_i / n_i

where S is the Kaplan–Meier estimate of being free of *any* event (the outcome or a competing
one), d_i the patients reaching the outcome at t_i and n_i those at risk just before t_i
(Aalen & Johansen 1978; Kalbfleisch & Prentice 2002, §8.2). At a time with events of both kinds
and censorings, the events come first (as in :mod:`timeline.cohort.km`).

Variance: the delta-method estimate of Collett, *Modelling Survival Data in Medical Research*,
3rd ed., §12.2.2 (Marubini & Valsecchi 1995, §10.2; the formula lifelines' AalenJohansenFitter
implements), with e_i the events of either kind at t_i:

    Var F(t) = Σ [F(t) − F(t_i)]² e_i / (n_i (n_i − e_i))
             + Σ S(t_{i−1})² d_i (n_i − d_i) / n_i³
             − 2 Σ [F(t) − F(t_i)] S(t_{i−1}) d_i / n_i²

over t_i ≤ t. With no competing event it is Greenwood's variance of 1 − S. The pointwise
interval is built on the log(−log F) scale by default (Choudhury, *Stat Med* 2002;21:1129;
Stata's ``stcompet``), which keeps it within [0, 1]; ``transform="log"`` builds it on log F,
the upper limit cut at 1. None where F is 0 (no one has reached the outcome yet) or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from timeline.cohort.km import TRANSFORMS, first_at_or_below_half, last_step_at, z_value

CENSORED, EVENT, COMPETING = 0, 1, 2


@dataclass(frozen=True)
class CifStep:
    time: float
    at_risk: int  # patients at risk just before ``time``
    events: int  # reached the outcome at ``time``
    competing: int  # had a competing event at ``time``
    censored: int
    incidence: float  # F(t): the estimated proportion that reached the outcome by ``time``
    variance: float  # the delta-method variance of F(t)
    free: float  # S(t): the Kaplan–Meier estimate of having had neither event by ``time``

    @property
    def std_err(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def ci(self, level: float = 0.95, transform: str = "log-log") -> tuple[float, float] | None:
        """The pointwise interval for F(t); see :func:`incidence_ci`."""
        return incidence_ci(self.incidence, self.variance, level, transform)


def incidence_ci(
    f: float, variance: float, level: float = 0.95, transform: str = "log-log"
) -> tuple[float, float] | None:
    """The ``level`` interval for a cumulative incidence ``f`` with ``variance``: on the
    log(−log F) scale, F^exp(∓z σ / (F log F)) ordered; or on log F, F·exp(±z σ / F) with the
    upper limit cut at 1. None at F = 0 or 1, or without a finite variance."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform is {' or '.join(TRANSFORMS)}, not {transform!r}")
    if not 0.0 < f < 1.0 or not math.isfinite(variance):
        return None
    z, se = z_value(level), math.sqrt(max(variance, 0.0))
    if transform == "log":
        return f * math.exp(-z * se / f), min(1.0, f * math.exp(z * se / f))
    # log(−log F) ± z · se / (F |log F|), mapped back by exp(−exp(·)): a decreasing map
    g, spread = math.log(-math.log(f)), z * se / (f * abs(math.log(f)))
    return math.exp(-math.exp(g + spread)), math.exp(-math.exp(g - spread))


@dataclass(frozen=True)
class CifCurve:
    steps: tuple[CifStep, ...]
    n: int

    def step_at(self, t: float) -> CifStep | None:
        """The last step at or before ``t`` (None before the first)."""
        return last_step_at(self.steps, t)

    def incidence_at(self, t: float) -> float:
        """F(t), right-continuous; 0 before the first step, the last step's after the last."""
        step = self.step_at(t)
        return step.incidence if step is not None else 0.0

    def incidence_ci_at(
        self, t: float, level: float = 0.95, transform: str = "log-log"
    ) -> tuple[float, float] | None:
        step = self.step_at(t)
        return step.ci(level, transform) if step is not None else None

    def median(self) -> float | None:
        """The first time at which F(t) ≥ 1/2 (the middle of a stretch where it is exactly 1/2,
        as for Kaplan–Meier's median); None when fewer than half are estimated to reach it —
        with competing events, F may never get there however long the follow-up."""
        return first_at_or_below_half([(st.time, 1.0 - st.incidence) for st in self.steps if st.events])


def aalen_johansen(times: Sequence[float], status: Sequence[int]) -> CifCurve:
    """The cumulative incidence of the outcome from each patient's time and status:
    :data:`EVENT` (reached the outcome), :data:`COMPETING` (a competing event ended their chance
    of it) or :data:`CENSORED`."""
    if len(times) != len(status):
        raise ValueError("times and status differ in length")
    if any(s not in (CENSORED, EVENT, COMPETING) for s in status):
        raise ValueError("a status is 0 (censored), 1 (the outcome) or 2 (a competing event)")
    pairs = sorted(zip(times, status, strict=True))
    n = len(pairs)
    at_risk, free, incidence = n, 1.0, 0.0
    # The variance's sums over the event times t_i ≤ t, kept as running sums of powers of F(t_i)
    # so that each step costs O(1): with g_i = e_i / (n_i (n_i − e_i)) and c_i = S(t_{i−1}) d_i / n_i²,
    # Σ (F − F_i)² g_i = F² Σ g_i − 2F Σ F_i g_i + Σ F_i² g_i and Σ (F − F_i) c_i = F Σ c_i − Σ F_i c_i.
    g0 = g1 = g2 = c0 = c1 = own = 0.0
    steps: list[CifStep] = []
    i = 0
    while i < n:
        t = pairs[i][0]
        d = k = c = 0
        while i < n and pairs[i][0] == t:
            d, k, c = (
                d + (pairs[i][1] == EVENT),
                k + (pairs[i][1] == COMPETING),
                c + (pairs[i][1] == CENSORED),
            )
            i += 1
        e = d + k
        if e:
            before = free
            incidence += before * d / at_risk
            free *= 1.0 - e / at_risk
            # where everyone at risk had an event the weight g_i is infinite, but no later time
            # exists and at this one F − F_i is 0: the term is 0
            g = e / (at_risk * (at_risk - e)) if e < at_risk else 0.0
            g0, g1, g2 = g0 + g, g1 + incidence * g, g2 + incidence * incidence * g
            cross = before * d / at_risk**2
            c0, c1 = c0 + cross, c1 + incidence * cross
            own += before * before * d * (at_risk - d) / at_risk**3
        f = incidence
        variance = max(0.0, f * f * g0 - 2.0 * f * g1 + g2 + own - 2.0 * (f * c0 - c1))
        steps.append(CifStep(time=round(t, 4), at_risk=at_risk, events=d, competing=k, censored=c,
                             incidence=incidence, variance=variance, free=free))  # fmt: skip
        at_risk -= e + c
    return CifCurve(steps=tuple(steps), n=n)


__all__ = ["CENSORED", "COMPETING", "EVENT", "CifCurve", "CifStep", "aalen_johansen", "incidence_ci"]
