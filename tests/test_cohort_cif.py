"""Aalen–Johansen cumulative incidence with competing events (timeline.cohort.cif)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.cohort.cif import CENSORED, COMPETING, EVENT, aalen_johansen, incidence_ci
from timeline.cohort.km import kaplan_meier

# twelve patients, no ties: 1 = the outcome, 2 = a competing event, 0 = censored
REF_TIMES = [3.0, 5.0, 8.0, 10.0, 12.0, 15.0, 18.0, 21.0, 25.0, 30.0, 34.0, 40.0]
REF_STATUS = [1, 2, 0, 1, 1, 2, 0, 1, 2, 1, 0, 1]
# F(t), its delta-method variance and the log(−log F) 95% limits at each event time, as
# lifelines 0.30.3's AalenJohansenFitter computes them (Collett's formula; its own code, run
# once outside this project, not a dependency)
REFERENCE = {
    3.0: (0.083333333333, 0.006365740741, (0.005052835479, 0.31107040999)),
    5.0: (0.083333333333, 0.006365740741, (0.005052835479, 0.31107040999)),
    10.0: (0.175925925926, 0.012843411827, (0.027500435309, 0.431591671919)),
    12.0: (0.268518518519, 0.017701665143, (0.063802953781, 0.533548713555)),
    15.0: (0.268518518519, 0.017701665143, (0.063802953781, 0.533548713555)),
    21.0: (0.37962962963, 0.023040028197, (0.113576590873, 0.649691009615)),
    25.0: (0.37962962963, 0.023040028197, (0.113576590873, 0.649691009615)),
    30.0: (0.490740740741, 0.025223384393, (0.176348958098, 0.746764071854)),
}


def _step(times: list[float], status: list[int], t: float):  # type: ignore[no-untyped-def]
    step = aalen_johansen(times, status).step_at(t)
    assert step is not None
    return step


@pytest.mark.parametrize("t", sorted(REFERENCE))
def test_incidence_variance_and_limits_match_the_reference_implementation(t: float) -> None:
    f, var, (lo, hi) = REFERENCE[t]
    step = _step(REF_TIMES, REF_STATUS, t)
    assert step.incidence == pytest.approx(f, abs=1e-11)
    assert step.variance == pytest.approx(var, abs=1e-11)
    ci = step.ci(0.95, "log-log")
    assert ci is not None
    assert ci == pytest.approx((lo, hi), abs=1e-10)


def test_the_last_patient_at_risk_reaching_the_outcome_keeps_a_finite_variance() -> None:
    # everyone at risk has an event at 40: the first term's weight is infinite but multiplied by
    # F(40) − F(40) = 0 (lifelines gives NaN there)
    step = _step(REF_TIMES, REF_STATUS, 40.0)
    assert step.incidence == pytest.approx(0.712962962963, abs=1e-11)
    assert math.isfinite(step.variance) and step.variance > 0


def test_events_of_both_kinds_at_one_time_share_the_risk_set() -> None:
    curve = aalen_johansen([1.0, 1.0, 2.0, 3.0], [EVENT, COMPETING, EVENT, CENSORED])
    first, second, third = curve.steps
    assert (first.at_risk, first.events, first.competing, first.incidence, first.free) == (4, 1, 1, 0.25, 0.5)
    assert (second.at_risk, second.incidence, second.free) == (2, 0.5, 0.25)
    assert (third.at_risk, third.censored, third.incidence) == (1, 1, 0.5)


def test_a_competing_event_lowers_the_incidence_below_one_minus_kaplan_meier() -> None:
    times, status = [1.0, 2.0, 3.0, 4.0], [COMPETING, EVENT, EVENT, CENSORED]
    cif = aalen_johansen(times, status).incidence_at(4.0)
    km = kaplan_meier(times, [s == EVENT for s in status]).reached_by(4.0)
    assert cif == pytest.approx(0.5)
    assert km == pytest.approx(2 / 3)


def test_the_incidence_is_zero_before_the_first_step() -> None:
    assert aalen_johansen([5.0, 6.0], [EVENT, EVENT]).incidence_at(4.9) == 0.0


def test_the_median_is_the_first_time_half_have_reached_the_outcome() -> None:
    # F: 0.2 at 2, 0.4 at 3, 0.6 at 4
    assert aalen_johansen([1.0, 2.0, 3.0, 4.0, 5.0], [COMPETING, EVENT, EVENT, EVENT, EVENT]).median() == 4.0


def test_a_median_where_the_incidence_is_exactly_one_half_is_the_middle_of_that_stretch() -> None:
    # F is 0.5 from 3 until the event at 4, as Kaplan–Meier's median takes such a stretch
    assert aalen_johansen([1.0, 2.0, 3.0, 4.0], [COMPETING, EVENT, EVENT, EVENT]).median() == 3.5


def test_the_median_is_none_when_competing_events_keep_the_incidence_below_one_half() -> None:
    assert aalen_johansen([1.0, 2.0, 3.0, 4.0], [COMPETING, COMPETING, EVENT, CENSORED]).median() is None


def test_no_interval_before_anyone_reaches_the_outcome() -> None:
    assert _step([1.0, 2.0], [COMPETING, EVENT], 1.0).ci() is None


def test_no_interval_once_everyone_has_reached_the_outcome() -> None:
    assert incidence_ci(1.0, 0.0) is None


def test_the_log_scale_cuts_its_upper_limit_at_one() -> None:
    ci = incidence_ci(0.9, 0.04, 0.95, "log")
    assert ci is not None and ci[1] == 1.0


def test_a_status_other_than_censored_event_or_competing_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        aalen_johansen([1.0], [3])


def test_an_unknown_transform_is_refused() -> None:
    with pytest.raises(ValueError, match="transform"):
        incidence_ci(0.5, 0.01, 0.95, "logit")


patients = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30), st.sampled_from([CENSORED, EVENT, COMPETING])),
    min_size=1,
    max_size=40,
)


@given(patients)
def test_without_competing_events_the_incidence_is_one_minus_kaplan_meier_with_greenwoods_variance(
    data: list[tuple[int, int]],
) -> None:
    times = [float(t) for t, _ in data]
    status = [EVENT if s == COMPETING else s for _, s in data]
    cif = aalen_johansen(times, status)
    km = kaplan_meier(times, [s == EVENT for s in status])
    for cs, ks in zip(cif.steps, km.steps, strict=True):
        assert cs.incidence == pytest.approx(1.0 - ks.survival, abs=1e-12)
        if ks.survival > 0.0 and math.isfinite(ks.greenwood):
            assert cs.variance == pytest.approx(ks.survival**2 * ks.greenwood, rel=1e-9, abs=1e-12)


@given(patients)
def test_without_censoring_the_incidence_is_the_share_that_reached_the_outcome_by_then(
    data: list[tuple[int, int]],
) -> None:
    data = [(t, EVENT if s == CENSORED else s) for t, s in data]
    cif = aalen_johansen([float(t) for t, _ in data], [s for _, s in data])
    for step in cif.steps:
        share = sum(1 for t, s in data if t <= step.time and s == EVENT) / len(data)
        assert step.incidence == pytest.approx(share, abs=1e-12)


@given(patients)
def test_the_two_incidences_and_the_event_free_share_add_up_to_one(data: list[tuple[int, int]]) -> None:
    times = [float(t) for t, _ in data]
    mine = aalen_johansen(times, [s for _, s in data])
    swapped = {EVENT: COMPETING, COMPETING: EVENT, CENSORED: CENSORED}
    theirs = aalen_johansen(times, [swapped[s] for _, s in data])
    for a, b in zip(mine.steps, theirs.steps, strict=True):
        assert a.incidence + b.incidence + a.free == pytest.approx(1.0, abs=1e-12)


@given(patients, st.sampled_from(["log-log", "log"]))
def test_every_interval_holds_its_estimate_and_lies_within_zero_and_one(
    data: list[tuple[int, int]], transform: str
) -> None:
    cif = aalen_johansen([float(t) for t, _ in data], [s for _, s in data])
    for step in cif.steps:
        ci = step.ci(0.95, transform)
        if ci is not None:
            assert 0.0 <= ci[0] <= step.incidence + 1e-12
            assert step.incidence - 1e-12 <= ci[1] <= 1.0
