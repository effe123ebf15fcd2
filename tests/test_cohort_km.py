"""Kaplan–Meier product-limit estimates against a hand-computed example with censoring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.cohort.km import kaplan_meier

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
