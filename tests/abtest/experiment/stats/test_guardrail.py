"""Non-inferiority guardrails: the one-sided bound against the margin, and the ratio's delta-method variance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abtest.experiment.stats import RatioStatistic, Status
from abtest.experiment.stats.guardrail import non_inferiority, ratio_estimate


def test_held_when_the_upper_one_sided_bound_is_below_the_margin():
    z = stats.norm.ppf(0.95)
    held = non_inferiority("cold_start_share", control=0.10, treatment=0.11, se=0.004, margin=0.02, alpha=0.05)
    assert held.difference == pytest.approx(0.01)
    assert held.upper_bound == pytest.approx(0.01 + z * 0.004)
    assert held.held and held.status == Status.OK
    # the same point difference, too uncertain to show it is within the margin: not held
    unproven = non_inferiority("cold_start_share", control=0.10, treatment=0.11, se=0.01, margin=0.02, alpha=0.05)
    assert not unproven.held and "NOT held" in unproven.message


def test_point_values_without_interval_and_missing_arms():
    latency = non_inferiority("latency_ms", control=4.0, treatment=8.5, se=math.nan, margin=5.0, alpha=0.05)
    assert latency.held and latency.upper_bound == pytest.approx(4.5) and "no interval" in latency.message
    slower = non_inferiority("latency_ms", control=4.0, treatment=9.5, se=math.nan, margin=5.0, alpha=0.05)
    assert not slower.held
    missing = non_inferiority("latency_ms", control=math.nan, treatment=4.0, se=math.nan, margin=5.0, alpha=0.05)
    assert not missing.held and missing.status == Status.ZERO_TRAFFIC


def test_ratio_estimate_equals_the_engine_delta_method_and_allows_negative_numerators():
    rng = np.random.default_rng(3)
    clicks, impressions = rng.binomial(10, 0.2, 300), np.full(300, 10)
    estimate = ratio_estimate(clicks, impressions)
    engine = RatioStatistic.from_units(clicks, impressions)
    assert estimate.value == pytest.approx(engine.ratio)
    assert estimate.variance == pytest.approx(engine.linearized_variance / 300)
    gap = ratio_estimate(rng.random(300) * 10 - clicks, impressions)  # score minus clicks: either sign
    assert math.isfinite(gap.value) and gap.variance > 0
    assert math.isnan(ratio_estimate([1.0], [2.0]).value)
