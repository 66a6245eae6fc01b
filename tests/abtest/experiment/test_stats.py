"""The statistics engine: known-good numbers, degenerate cases, and its error rates on synthetic experiments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest.experiment.stats import (
    AnalysisConfig,
    RatioStatistic,
    Status,
    monitor,
    power_analysis,
    power_for_effect,
    ratio_lift,
    sequential_lift,
    srm_test,
)
from abtest.experiment.stats.sequential import always_valid_p_value, confidence_sequence_halfwidth
from benchmarks.synthetic_users import UserPopulation

CONFIG = AnalysisConfig(alpha=0.05)
POPULATION = UserPopulation(ctr=0.1, concentration=20.0, impressions_mean=10.0)


def _upper_tolerance(trials: int, rate: float) -> float:
    """Largest share of successes that is still consistent with ``rate`` (one-sided, 0.999)."""
    return stats.binom.ppf(0.999, trials, rate) / trials


def _consistent(successes: int, trials: int, rate: float) -> bool:
    return stats.binomtest(successes, trials, rate).pvalue > 0.001


# -- known-good numbers --------------------------------------------------------------------------------------


def test_ratio_with_unit_denominators_is_welch_z_test():
    """With one impression per user the ratio is a mean; the test must equal statsmodels' unequal-variance z."""
    rng = np.random.default_rng(1)
    a, b = rng.binomial(1, 0.30, 400), rng.binomial(1, 0.36, 300)
    result = ratio_lift(
        RatioStatistic.from_units(a, np.ones(400)), RatioStatistic.from_units(b, np.ones(300)), CONFIG
    )
    compare = CompareMeans(DescrStatsW(b.astype(float)), DescrStatsW(a.astype(float)))
    z, p_value = compare.ztest_ind(usevar="unequal")
    low, high = compare.zconfint_diff(alpha=0.05, usevar="unequal")
    assert result.status == Status.OK
    assert result.absolute.effect == pytest.approx(b.mean() - a.mean())
    assert result.absolute.p_value == pytest.approx(p_value, rel=1e-6)
    assert (result.absolute.ci_low, result.absolute.ci_high) == pytest.approx((low, high), rel=1e-6)
    assert result.absolute.effect / result.absolute.se == pytest.approx(z, rel=1e-6)


def test_ratio_delta_method_matches_hand_computation():
    clicks_a, impressions_a = np.array([0, 1, 2, 1, 3]), np.array([4, 5, 6, 2, 9])
    clicks_b, impressions_b = np.array([2, 2, 0, 4]), np.array([5, 3, 4, 7])
    result = ratio_lift(
        RatioStatistic.from_units(clicks_a, impressions_a),
        RatioStatistic.from_units(clicks_b, impressions_b),
        CONFIG,
    )

    def ratio_and_variance(m, d):
        r, mean_d = m.sum() / d.sum(), d.mean()
        cov = np.cov(m, d)  # ddof=1
        return r, (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / mean_d**2 / len(m)

    r_a, v_a = ratio_and_variance(clicks_a, impressions_a)
    r_b, v_b = ratio_and_variance(clicks_b, impressions_b)
    assert (r_a, r_b) == pytest.approx((7 / 26, 8 / 19))
    assert result.absolute.effect == pytest.approx(r_b - r_a)
    assert result.absolute.se == pytest.approx(math.sqrt(v_a + v_b))
    assert result.relative.effect == pytest.approx(r_b / r_a - 1)
    assert result.relative.se == pytest.approx(math.sqrt(v_b / r_a**2 + r_b**2 * v_a / r_a**4))
    # these numbers, written out once so a silent change in the formula shows up
    assert result.absolute.se == pytest.approx(0.142353, abs=1e-6)
    assert result.absolute.p_value == pytest.approx(0.286190, abs=1e-6)


def test_statistics_pool_by_addition():
    rng = np.random.default_rng(2)
    m, d, x = POPULATION.draw(rng, 50)
    whole = RatioStatistic.from_units(m, d, x)
    parts = RatioStatistic.from_units(m[:20], d[:20], x[:20]) + RatioStatistic.from_units(m[20:], d[20:], x[20:])
    for name in ("n", "m_sum", "m_sum_squares", "d_x_sum_of_products", "x_sum_squares"):
        assert getattr(parts, name) == pytest.approx(getattr(whole, name))


def test_srm_known_value_and_flags():
    result = srm_test([5000, 4750], CONFIG)
    assert result.statistic == pytest.approx((125**2 + 125**2) / 4875)
    assert result.p_value == pytest.approx(stats.chi2.sf(6.410256, 1), rel=1e-5)
    assert not result.flagged  # p = 0.011 is not below 0.001
    # a 0.5 split with 5% of B's users dropped
    assert srm_test([10_000, 9_500], CONFIG).flagged
    uneven = AnalysisConfig(expected_split=(0.8, 0.2), alpha=0.05)
    assert not srm_test([8_000, 2_000], uneven).flagged
    assert srm_test([5_000, 5_000], uneven).flagged


def test_srm_on_simulated_assignment():
    rng = np.random.default_rng(3)
    users = 40_000
    in_b = rng.random(users) < 0.5
    clean = [int((~in_b).sum()), int(in_b.sum())]
    assert not srm_test(clean, CONFIG).flagged
    kept_b = in_b & (rng.random(users) >= 0.05)  # 5% of B's users lost (e.g. a crash before logging)
    assert srm_test([clean[0], int(kept_b.sum())], CONFIG).flagged


def test_power_and_mde_match_statsmodels_and_closed_form():
    baseline = RatioStatistic.from_units([1, 0, 2, 0, 1, 3, 0, 1], [5, 4, 6, 3, 5, 8, 2, 4])
    result = power_analysis(baseline, users_control=1000, users_treatment=1000, config=CONFIG)
    sigma = math.sqrt(baseline.linearized_variance)
    closed_form = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sigma * math.sqrt(2 / 1000)
    assert result.status == Status.OK
    assert result.sigma == pytest.approx(sigma)
    assert result.mde_absolute == pytest.approx(closed_form, rel=1e-3)
    assert result.mde_relative == pytest.approx(result.mde_absolute / baseline.ratio)
    power = power_for_effect(
        result.mde_absolute, sigma=sigma, users_control=1000, users_treatment=1000, alpha=0.05
    )
    assert power == pytest.approx(0.8, abs=1e-4)
    assert NormalIndPower().power(0.2, nobs1=393.4, alpha=0.05) == pytest.approx(0.8, abs=1e-3)


def test_sequential_matches_hand_formula_and_is_dual_to_p_value():
    config = AnalysisConfig(alpha=0.05, sequential_tuning=5000)
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5000
    variance, units = 1e-4, 1000
    s2 = variance * units
    expected = math.sqrt(
        s2 * 2 * (units * rho2 + 1) / (units**2 * rho2) * math.log(math.sqrt(units * rho2 + 1) / 0.05)
    )
    assert confidence_sequence_halfwidth(variance, units, config) == pytest.approx(expected)
    assert expected > stats.norm.ppf(0.975) * math.sqrt(variance)  # wider than the fixed-horizon interval
    for effect in np.linspace(0, 0.08, 33):
        inside = abs(effect) <= expected
        assert (always_valid_p_value(effect, variance, units, config) >= 0.05) == pytest.approx(inside)


# -- degenerate inputs return a coded status ----------------------------------------------------------------


def test_degenerate_cases_return_status_not_exceptions():
    empty = RatioStatistic.from_units([], [])
    some = RatioStatistic.from_units([1, 0, 2], [3, 3, 3])
    assert ratio_lift(empty, some, CONFIG).status == Status.ZERO_TRAFFIC
    assert ratio_lift(RatioStatistic.from_units([0, 0], [0, 0]), some, CONFIG).status == Status.NO_DENOMINATOR
    all_clicks = RatioStatistic.from_units([3, 5, 2], [3, 5, 2])
    result = ratio_lift(all_clicks, all_clicks, CONFIG)
    assert result.status == Status.ZERO_VARIANCE and result.absolute is None
    assert result.control.ratio == 1.0
    no_clicks = RatioStatistic.from_units([0, 0, 0], [3, 4, 5])
    baseline_zero = ratio_lift(no_clicks, some, CONFIG)
    assert baseline_zero.status == Status.ZERO_BASELINE
    assert baseline_zero.absolute is not None and baseline_zero.relative is None
    assert sequential_lift(empty, some, CONFIG).status == Status.ZERO_TRAFFIC
    looks, first_stop = monitor([(empty, empty), (all_clicks, all_clicks)], CONFIG)
    assert [look.status for look in looks] == [Status.ZERO_TRAFFIC, Status.ZERO_VARIANCE] and first_stop is None
    assert srm_test([0, 0], CONFIG).status == Status.ZERO_TRAFFIC
    assert power_analysis(all_clicks, users_control=100, users_treatment=100, config=CONFIG).status == (
        Status.ZERO_VARIANCE
    )
    assert power_analysis(some, users_control=0, users_treatment=100, config=CONFIG).status == Status.ZERO_TRAFFIC


def test_config_rejects_bad_values_with_the_rule():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        AnalysisConfig(alpha=1.5)
    with pytest.raises(ValueError, match="summing to 1"):
        AnalysisConfig(expected_split=(0.5, 0.6), alpha=0.05)
    with pytest.raises(ValueError, match="one count per configured arm"):
        srm_test([1, 2, 3], CONFIG)


# -- error rates on synthetic experiments -------------------------------------------------------------------


def test_aa_false_positive_rate_fixed_horizon_is_alpha():
    rng = np.random.default_rng(10)
    trials = 400
    positives = sum(
        ratio_lift(POPULATION.statistic(rng, 300), POPULATION.statistic(rng, 300), CONFIG).significant
        for _ in range(trials)
    )
    assert _consistent(positives, trials, 0.05), positives / trials


def test_aa_sequential_with_daily_peeking_does_not_exceed_alpha():
    rng = np.random.default_rng(11)
    trials, days, users_per_day = 300, 10, 60
    config = AnalysisConfig(alpha=0.05, sequential_tuning=days * users_per_day * 2)
    stopped = naive_stopped = 0
    for _ in range(trials):
        control = treatment = None
        looks = []
        for _day in range(days):
            new_a, new_b = POPULATION.statistic(rng, users_per_day), POPULATION.statistic(rng, users_per_day)
            control = new_a if control is None else control + new_a
            treatment = new_b if treatment is None else treatment + new_b
            looks.append((control, treatment))
        stopped += monitor(looks, config)[1] is not None
        naive_stopped += any(ratio_lift(a, b, config).significant for a, b in looks)
    assert stopped / trials <= _upper_tolerance(trials, 0.05), stopped / trials
    # the reason the sequential test exists: peeking at the fixed-horizon p-value inflates the error rate
    assert naive_stopped / trials > 0.1


def test_planted_effect_coverage_and_power_match_nominal():
    rng = np.random.default_rng(12)
    trials, users, lift = 400, 500, 0.15
    true_effect = POPULATION.ctr * lift
    pilot = POPULATION.statistic(np.random.default_rng(99), 100_000)
    expected_power = power_for_effect(
        true_effect,
        sigma=math.sqrt(pilot.linearized_variance),
        users_control=users,
        users_treatment=users,
        alpha=0.05,
    )
    covered = detected = relative_covered = 0
    for _ in range(trials):
        result = ratio_lift(
            POPULATION.statistic(rng, users), POPULATION.statistic(rng, users, relative_lift=lift), CONFIG
        )
        covered += result.absolute.ci_low <= true_effect <= result.absolute.ci_high
        relative_covered += result.relative.ci_low <= lift <= result.relative.ci_high
        detected += result.significant
    assert 0.3 < expected_power < 0.9  # a planted effect the test can sometimes miss: the check has teeth
    assert _consistent(covered, trials, 0.95), covered / trials
    assert _consistent(relative_covered, trials, 0.95), relative_covered / trials
    assert _consistent(detected, trials, expected_power), (detected / trials, expected_power)


def test_cuped_reduces_variance_and_stays_unbiased():
    rng = np.random.default_rng(13)
    trials, users, lift = 300, 400, 0.1
    true_effect = POPULATION.ctr * lift
    estimates, reductions, covered = [], [], 0
    for _ in range(trials):
        control, treatment = POPULATION.statistic(rng, users), POPULATION.statistic(rng, users, relative_lift=lift)
        adjusted = ratio_lift(control, treatment, CONFIG, cuped=True)
        plain = ratio_lift(control, treatment, CONFIG)
        assert adjusted.absolute.se < plain.absolute.se
        estimates.append(adjusted.absolute.effect)
        reductions.append(adjusted.variance_reduction)
        covered += adjusted.absolute.ci_low <= true_effect <= adjusted.absolute.ci_high
    estimates = np.array(estimates)
    assert np.mean(reductions) > 0.1
    assert abs(estimates.mean() - true_effect) < 4 * estimates.std(ddof=1) / math.sqrt(trials)
    assert _consistent(covered, trials, 0.95), covered / trials


def test_cuped_without_covariate_changes_nothing():
    rng = np.random.default_rng(14)
    m, d, _ = POPULATION.draw(rng, 200)
    m2, d2, _ = POPULATION.draw(rng, 200)
    a, b = RatioStatistic.from_units(m, d), RatioStatistic.from_units(m2, d2)
    adjusted, plain = ratio_lift(a, b, CONFIG, cuped=True), ratio_lift(a, b, CONFIG)
    assert adjusted.theta == 0.0 and adjusted.variance_reduction == pytest.approx(0.0)
    assert adjusted.absolute == plain.absolute
