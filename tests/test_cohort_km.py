"""Kaplan–Meier product-limit estimates against a hand-computed example with censoring, and
their confidence intervals against the published 6-MP leukaemia figures."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.cohort.km import Curve, kaplan_meier

# Six patients: events at 1, 3, 3 and 5; censored at 2 and 4 (and one censoring tied with
# the events at 3 in the second example).
TIMES = [1.0, 2.0, 3.0, 3.0, 4.0, 5.0]
EVENTS = [True, False, True, True, False, True]


def test_survival_is_the_product_of_the_conditional_probabilities() -> None:
    curve = kaplan_meier(TIMES, EVENTS)
    s = {step.time: step.survival for step in curve.steps}
    assert s[1.0] == pytest.approx(5 / 6)
    assert s[2.0] == pytest.approx(5 / 6)  # a censoring does not move the curve
    assert s[3.0] == pytest.approx(5 / 6 * 2 / 4)
    assert s[5.0] == pytest.approx(0.0)


def test_number_at_risk_drops_by_events_and_censorings_before_the_time() -> None:
    curve = kaplan_meier(TIMES, EVENTS)
    assert [step.at_risk for step in curve.steps] == [6, 5, 4, 2, 1]
    assert curve.at_risk(3.0) == 4
    assert curve.at_risk(3.5) == 2


def test_median_is_the_first_time_survival_reaches_one_half() -> None:
    assert kaplan_meier(TIMES, EVENTS).median() == 3.0


def test_median_where_survival_is_exactly_one_half_is_the_middle_of_that_stretch() -> None:
    """Helper 49: events at 1, 2 (S = 0.5 from 2) and 4 of four patients: R's survfit and SAS
    give 3, the middle of [2, 4); the first time S reached 0.5 was given."""
    assert kaplan_meier([1.0, 2.0, 4.0, 6.0], [True, True, True, False]).median() == 3.0


def test_median_at_exactly_one_half_with_no_later_event_is_that_time() -> None:
    assert kaplan_meier([1.0, 2.0, 3.0, 4.0], [True, True, False, False]).median() == 2.0


def test_median_is_none_when_the_curve_stays_above_one_half() -> None:
    assert kaplan_meier([1.0, 2.0, 3.0], [True, False, False]).median() is None


def test_a_censoring_tied_with_events_still_counts_at_risk_at_that_time() -> None:
    curve = kaplan_meier([1.0, 1.0, 2.0], [True, False, True])
    first = curve.steps[0]
    assert (first.at_risk, first.events, first.censored) == (3, 1, 1)
    assert first.survival == pytest.approx(2 / 3)
    assert curve.steps[1].survival == pytest.approx(0.0)


def test_reached_by_is_one_minus_survival_at_that_time() -> None:
    curve = kaplan_meier(TIMES, EVENTS)
    assert curve.reached_by(0.5) == 0.0
    assert curve.reached_by(3.0) == pytest.approx(1 - 5 / 12)


def test_a_censoring_at_the_end_of_a_day_leaves_the_risk_set_before_an_event_at_the_next_midnight() -> None:
    """Helper 40: censored through the end of day 30 (30.99999999 days), an event at day 31's
    midnight: two at risk at the event, not three, though both show at day 31."""
    end_of_day_30 = 31 - 1e-6 / 86400
    curve = kaplan_meier([end_of_day_30, 31.0, 60.0], [False, True, False])
    censored, event = curve.steps[0], curve.steps[1]
    assert (censored.time, censored.censored, event.time, event.at_risk) == (31.0, 1, 31.0, 2)
    assert event.survival == pytest.approx(0.5)


@given(
    st.integers(min_value=1, max_value=5000).flatmap(lambda big: st.tuples(st.integers(0, big), st.just(big)))
)
def test_a_percentage_rounds_a_half_up_to_one_decimal(counts: tuple[int, int]) -> None:
    """Helper 40: 1/16 printed 6.2% (Python rounds half to even), 3/16 18.8%. Exact integers:
    tenths of a percent, rounded half up, are (2000 n + N) // 2N."""
    from timeline.cohort.report import Cell

    n, big = counts
    cell = Cell(id="x", section="s", row="r", column="c", group="all", label="l", denominator="d", n=n, N=big)
    assert cell.pct == ((2000 * n + big) // (2 * big)) / 10


# ---- confidence intervals -----------------------------------------------------------------

# Freireich et al., Blood 1963: remission times (weeks) of the 21 children on 6-MP; False: censored
SIX_MP_TIMES = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
SIX_MP_EVENTS = [c == "x" for c in "xxx.x.x..xx...xx....."]
# At each relapse time: S, Greenwood's SE, and the 95% log-log limits — the values R's
# survfit(Surv(time, status) ~ 1, conf.type = "log-log") prints for these data (S and SE as in
# Klein & Moeschberger, Survival Analysis, 2nd ed. 2003, Table 4.1A), to 3 decimals (SE 4).
# test_the_6mp_reference_values_follow_from_the_published_formulas recomputes them.
SIX_MP_TABLE = {
    6: (0.857, 0.0764, 0.620, 0.952),
    7: (0.807, 0.0869, 0.563, 0.923),
    10: (0.753, 0.0963, 0.503, 0.889),
    13: (0.690, 0.1068, 0.432, 0.849),
    16: (0.627, 0.1141, 0.368, 0.805),
    22: (0.538, 0.1282, 0.268, 0.747),
    23: (0.448, 0.1346, 0.188, 0.680),
}
# R survfit's default (conf.type = "log") for the same data: lower, upper (cut at 1)
SIX_MP_LOG = {6: (0.720, 1.000), 7: (0.653, 0.996), 10: (0.586, 0.968), 13: (0.510, 0.935),
              16: (0.439, 0.896), 22: (0.337, 0.858), 23: (0.249, 0.807)}  # fmt: skip


def six_mp() -> Curve:
    return kaplan_meier([float(t) for t in SIX_MP_TIMES], SIX_MP_EVENTS)


def test_the_6mp_reference_values_follow_from_the_published_formulas() -> None:
    """Independently of km.py: S = Π (1 − d/r), Greenwood var(S) = S² Σ d/(r(r − d)), and the
    log-log limits S^exp(±1.959964 · √Σ / log S) (Kalbfleisch & Prentice; Collett §2.2.3)."""
    s, total = 1.0, 0.0
    for t in sorted(SIX_MP_TABLE):
        r = sum(1 for x in SIX_MP_TIMES if x >= t)
        d = sum(1 for x, e in zip(SIX_MP_TIMES, SIX_MP_EVENTS, strict=True) if x == t and e)
        s *= 1 - d / r
        total += d / (r * (r - d))
        k = math.exp(1.959964 * math.sqrt(total) / abs(math.log(s)))
        assert (
            round(s, 3),
            round(s * math.sqrt(total), 4),
            round(s**k, 3),
            round(s ** (1 / k), 3),
        ) == SIX_MP_TABLE[t]


def test_greenwood_standard_errors_of_the_6mp_data() -> None:
    got = {int(st.time): st for st in six_mp().steps if st.events}
    assert {t: (round(st.survival, 3), round(st.std_err or 0, 4)) for t, st in got.items()} == {
        t: row[:2] for t, row in SIX_MP_TABLE.items()
    }


def test_log_log_limits_of_the_6mp_data() -> None:
    got = {int(st.time): st.ci(0.95, "log-log") for st in six_mp().steps if st.events}
    assert {t: (round(ci[0], 3), round(ci[1], 3)) for t, ci in got.items() if ci} == {
        t: row[2:] for t, row in SIX_MP_TABLE.items()
    }


def test_log_limits_of_the_6mp_data_are_r_survfits_default() -> None:
    got = {int(st.time): st.ci(0.95, "log") for st in six_mp().steps if st.events}
    assert {t: (round(ci[0], 3), round(ci[1], 3)) for t, ci in got.items() if ci} == SIX_MP_LOG


def test_median_of_the_6mp_data_with_its_brookmeyer_crowley_interval() -> None:
    """Median 23 weeks; the lower log-log limit first reaches 1/2 at 13 weeks (0.432), the upper
    never does (0.680 at the last relapse): 23 (13, NA); on the log scale 23 (16, NA), as R's
    survfit prints it."""
    curve = six_mp()
    assert (curve.median(), curve.median_ci(0.95, "log-log"), curve.median_ci(0.95, "log")) == (
        23.0,
        (13.0, None),
        (16.0, None),
    )


def test_no_interval_before_the_first_event() -> None:
    """S = 1: Greenwood's variance is 0 and a [1, 1] interval would claim certainty from no events."""
    curve = kaplan_meier([1.0, 2.0, 3.0], [False, True, False])
    assert (curve.survival_ci_at(1.5), curve.steps[0].ci(), curve.steps[0].std_err) == (None, None, 0.0)


def test_no_interval_once_the_last_patient_at_risk_has_the_event() -> None:
    curve = kaplan_meier([1.0, 2.0], [True, True])
    last = curve.steps[-1]
    assert (last.survival, last.ci(), last.std_err, curve.survival_ci_at(5.0)) == (0.0, None, None, None)


def test_the_median_limits_skip_the_event_that_takes_survival_to_zero() -> None:
    """Three relapses, no censoring: S 2/3, 1/3, 0. The upper limit is above 1/2 at 2 and there
    is no interval at 3 (S = 0): the median 2 has no upper limit (NA), as in R's survfit."""
    curve = kaplan_meier([1.0, 2.0, 3.0], [True, True, True])
    assert curve.median() == 2.0
    assert curve.median_ci()[1] is None


def test_after_the_last_patient_leaves_the_interval_is_carried_as_the_estimate_is() -> None:
    curve = kaplan_meier([1.0, 2.0, 3.0, 4.0], [True, False, True, False])
    assert curve.at_risk(10.0) == 0
    assert curve.survival_ci_at(10.0) == curve.steps[-2].ci() == curve.survival_ci_at(3.0)


def test_a_confidence_level_outside_zero_and_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        six_mp().steps[0].ci(95)


survival_data = st.lists(
    st.tuples(st.integers(min_value=1, max_value=30), st.booleans()), min_size=1, max_size=40
)


@given(survival_data, st.sampled_from(["log-log", "log"]))
def test_every_interval_holds_its_estimate_and_lies_within_zero_and_one(
    data: list[tuple[int, bool]], transform: str
) -> None:
    curve = kaplan_meier([float(t) for t, _ in data], [e for _, e in data])
    for step in curve.steps:
        ci = step.ci(0.95, transform)
        if ci is None:
            assert step.survival in (0.0, 1.0)
            continue
        lo, hi = ci
        assert 0.0 <= lo <= step.survival <= hi <= 1.0


@given(survival_data, st.sampled_from(["log-log", "log"]))
def test_a_higher_level_gives_an_interval_holding_the_lower_levels(
    data: list[tuple[int, bool]], transform: str
) -> None:
    curve = kaplan_meier([float(t) for t, _ in data], [e for _, e in data])
    for step in curve.steps:
        narrow, wide = step.ci(0.90, transform), step.ci(0.99, transform)
        if narrow is not None and wide is not None:
            assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


@given(survival_data, st.sampled_from(["log-log", "log"]))
def test_the_median_lies_within_its_limits(data: list[tuple[int, bool]], transform: str) -> None:
    curve = kaplan_meier([float(t) for t, _ in data], [e for _, e in data])
    median, (lo, hi) = curve.median(), curve.median_ci(0.95, transform)
    if median is not None and lo is not None:
        assert lo <= median
    if median is not None and hi is not None:
        assert median <= hi
    if median is None:  # the upper limit needs the upper curve at 1/2, below S
        assert hi is None


@given(survival_data, st.integers(min_value=1, max_value=30))
def test_removing_a_censored_patient_never_lowers_greenwoods_variance_of_log_s(
    data: list[tuple[int, bool]], censored_at: int
) -> None:
    """Each term d / (r (r − d)) grows as the risk set shrinks. (The interval's width on the S
    scale is no such invariant: S moves too, and the width with it.)"""
    times = [float(t) for t, _ in data] + [float(censored_at)]
    events = [e for _, e in data] + [False]
    with_them = kaplan_meier(times, events)
    without = kaplan_meier(times[:-1], events[:-1])
    for t in {float(t) for t, _ in data}:
        a, b = with_them.step_at(t), without.step_at(t)
        if a is not None and b is not None:
            assert b.greenwood >= a.greenwood - 1e-12
