"""The sequential boundary calibrated for the planned looks: exact crossing probabilities and the A/A rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abtest.experiment.stats import AnalysisConfig, monitor
from abtest.experiment.stats.sequential import (
    CALIBRATION_SHARE,
    _z_boundary,
    always_valid_p_value,
    boundary_level,
    calibrated_level,
    confidence_sequence_halfwidth,
    crossing_probability,
)
from benchmarks.synthetic_users import UserPopulation


def test_one_look_crossing_is_the_two_sided_normal_tail():
    bound = float(_z_boundary(0.05, np.array([1.0]))[0])
    assert crossing_probability(0.05, 1) == pytest.approx(2 * stats.norm.sf(bound), abs=1e-6)


def test_three_looks_crossing_equals_scipy_multivariate_normal():
    times = np.array([1, 2, 3]) / 3
    bounds = _z_boundary(0.2, times)
    correlation = np.sqrt(np.minimum.outer(times, times) / np.maximum.outer(times, times))
    inside = stats.multivariate_normal(mean=np.zeros(3), cov=correlation).cdf(
        bounds, lower_limit=-bounds, rng=np.random.default_rng(0)
    )
    assert crossing_probability(0.2, 3) == pytest.approx(1 - inside, abs=2e-4)


def test_calibrated_level_spends_the_share_of_alpha_on_the_planned_looks():
    level = calibrated_level(0.05, 14)
    assert level == pytest.approx(0.1705, abs=2e-3)
    assert crossing_probability(level, 14) == pytest.approx(CALIBRATION_SHARE * 0.05, abs=1e-4)
    assert crossing_probability(0.05, 14) == pytest.approx(0.0098, abs=5e-4)  # the uncalibrated boundary
    assert calibrated_level(0.05, 0) == 0.05
    assert boundary_level(AnalysisConfig(alpha=0.05)) == 0.05


def test_calibrated_p_value_stays_dual_to_the_interval():
    config = AnalysisConfig(alpha=0.05, sequential_tuning=2000, sequential_looks=14)
    variance, units = 1e-4, 1000
    half = confidence_sequence_halfwidth(variance, units, config)
    assert half > stats.norm.ppf(0.975) * math.sqrt(variance)
    for effect in np.linspace(0, 0.06, 25):
        inside = abs(effect) <= half
        assert (always_valid_p_value(effect, variance, units, config) >= 0.05) == pytest.approx(inside)


def test_aa_rate_under_daily_peeking_is_near_alpha_after_calibration():
    population = UserPopulation(ctr=0.1, concentration=20.0, impressions_mean=10.0)
    rng = np.random.default_rng(21)
    trials, days, users_per_day = 400, 14, 60
    configs = [
        AnalysisConfig(alpha=0.05, sequential_tuning=2 * days * users_per_day, sequential_looks=looks)
        for looks in (0, days)
    ]
    stopped = [0, 0]
    for _ in range(trials):
        control = treatment = None
        looks = []
        for _day in range(days):
            a, b = population.statistic(rng, users_per_day), population.statistic(rng, users_per_day)
            control = a if control is None else control + a
            treatment = b if treatment is None else treatment + b
            looks.append((control, treatment))
        for index, config in enumerate(configs):
            stopped[index] += monitor(looks, config)[1] is not None
    before, after = (count / trials for count in stopped)
    assert before < 0.03  # the continuous boundary wastes most of the 5% budget
    assert stats.binomtest(stopped[1], trials, CALIBRATION_SHARE * 0.05).pvalue > 0.001, after
    assert after > before
