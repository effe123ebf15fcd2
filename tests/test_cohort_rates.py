"""Incidence rates with Garwood's exact Poisson interval, and the incomplete gamma function and
chi-square quantiles behind it, against published values and exact identities."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.cohort.rates import (
    chi2_quantile,
    gamma_p,
    gamma_q,
    gamma_quantile,
    incidence_rate,
    poisson_limits,
)

# chi-square quantiles (p, degrees of freedom) → value, from the standard tables (e.g.
# Abramowitz & Stegun, Table 26.8), to 6 significant figures
CHI2_TABLE = {
    (0.95, 1): 3.84146,
    (0.975, 1): 5.02389,
    (0.025, 2): 0.0506356,
    (0.975, 4): 11.1433,
    (0.05, 10): 3.94030,
    (0.025, 20): 9.59078,
    (0.975, 22): 36.7807,
    (0.95, 100): 124.342,
}


@pytest.mark.parametrize(("p", "df"), sorted(CHI2_TABLE))
def test_chi_square_quantiles_match_the_tables(p: float, df: int) -> None:
    assert chi2_quantile(p, df) == pytest.approx(CHI2_TABLE[(p, df)], rel=5e-6)


@pytest.mark.parametrize(
    ("events", "limits"),
    [(0, ("0", "3.689")), (1, ("0.0253", "5.572")), (10, ("4.795", "18.39"))],
)
def test_garwood_limits_match_the_published_values(events: int, limits: tuple[str, str]) -> None:
    """Garwood (Biometrika 1936), as tabulated for 95% exact Poisson limits (e.g. Ulm, Am J
    Epidemiol 1990): 0 events [0, 3.689], 1 [0.0253, 5.572], 10 [4.795, 18.39] — each to the
    digits printed."""
    for got, printed in zip(poisson_limits(events, 0.95), limits, strict=True):
        decimals = len(printed.partition(".")[2])
        assert round(got, decimals) == float(printed)


@given(st.floats(min_value=0.0, max_value=60.0))
def test_p_of_shape_one_is_the_exponential_distribution(x: float) -> None:
    assert gamma_p(1.0, x) == pytest.approx(-math.expm1(-x), abs=1e-13)


@given(st.floats(min_value=0.0, max_value=60.0))
def test_p_of_shape_one_half_is_the_error_function_of_the_root(x: float) -> None:
    assert gamma_p(0.5, x) == pytest.approx(math.erf(math.sqrt(x)), abs=1e-13)


@given(st.integers(min_value=1, max_value=150), st.floats(min_value=0.01, max_value=300.0))
def test_q_of_a_whole_shape_is_the_poisson_distribution_function(k: int, x: float) -> None:
    """Q(k, x) = P(Poisson(x) ≤ k − 1): the identity the exact interval rests on."""
    cdf = math.fsum(math.exp(-x + i * math.log(x) - math.lgamma(i + 1)) for i in range(k))
    assert gamma_q(k, x) == pytest.approx(cdf, rel=1e-9, abs=1e-15)


@given(st.floats(min_value=0.05, max_value=500.0), st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_the_gamma_quantile_inverts_p(a: float, p: float) -> None:
    assert gamma_p(a, gamma_quantile(p, a)) == pytest.approx(p, rel=1e-9, abs=1e-12)


@given(st.integers(min_value=0, max_value=2000), st.floats(min_value=0.5, max_value=0.999))
def test_the_exact_interval_holds_the_count(events: int, level: float) -> None:
    lo, hi = poisson_limits(events, level)
    assert 0.0 <= lo <= events < hi


@given(st.integers(min_value=0, max_value=500))
def test_both_limits_grow_with_the_count(events: int) -> None:
    (lo1, hi1), (lo2, hi2) = poisson_limits(events), poisson_limits(events + 1)
    assert lo1 < lo2 and hi1 < hi2


def test_a_rate_is_per_100_patient_years_with_its_limits_scaled_alike() -> None:
    rate = incidence_rate(10, 50.0)
    assert rate is not None
    assert (rate.value, rate.lower, rate.upper) == (
        pytest.approx(20.0),
        pytest.approx(4.795389 * 2, rel=1e-6),
        pytest.approx(18.390356 * 2, rel=1e-6),
    )


def test_no_rate_without_exposure() -> None:
    assert incidence_rate(0, 0.0) is None


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        poisson_limits(-1)
