"""The normal-posterior readout: known-good numbers from scipy's integrals, and its link to the p-value."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, stats

from abtest.experiment.stats import Status
from abtest.experiment.stats.bayes import normal_posterior
from abtest.experiment.stats.ratio import Estimate


def _estimate(effect: float, se: float) -> Estimate:
    z = stats.norm.ppf(0.975)
    return Estimate(effect, se, effect - z * se, effect + z * se, float(2 * stats.norm.sf(abs(effect) / se)))


def test_probability_and_expected_losses_equal_numerical_integrals():
    result = normal_posterior(_estimate(0.004, 0.003))
    density = stats.norm(0.004, 0.003).pdf
    loss_b, _ = integrate.quad(lambda x: max(0.0, -x) * density(x), -0.05, 0.05, points=[0.0])
    loss_a, _ = integrate.quad(lambda x: max(0.0, x) * density(x), -0.05, 0.05, points=[0.0])
    assert result.status == Status.OK
    assert result.probability_b_better == pytest.approx(stats.norm.cdf(0.004 / 0.003), rel=1e-12)
    assert result.probability_b_better == pytest.approx(0.908789, abs=1e-6)
    assert result.expected_loss_b == pytest.approx(loss_b, rel=1e-7)
    assert result.expected_loss_a == pytest.approx(loss_a, rel=1e-7)
    # the two losses differ by the posterior mean: E[max(0, x)] - E[max(0, -x)] = E[x]
    assert result.expected_loss_a - result.expected_loss_b == pytest.approx(0.004, rel=1e-9)
    assert (result.credible_low, result.credible_high) == pytest.approx(stats.norm(0.004, 0.003).interval(0.95))


def test_probability_b_better_is_one_minus_half_the_two_sided_p_value():
    for effect in (0.01, -0.02, 0.0):
        estimate = _estimate(effect, 0.008)
        result = normal_posterior(estimate)
        expected = 1 - estimate.p_value / 2 if effect >= 0 else estimate.p_value / 2
        assert result.probability_b_better == pytest.approx(expected, abs=1e-12)


def test_no_estimate_or_no_variance_is_coded_not_raised():
    missing = normal_posterior(None)
    assert missing.status == Status.ZERO_TRAFFIC and math.isnan(missing.probability_b_better)
    flat = normal_posterior(Estimate(0.01, 0.0, 0.01, 0.01, 0.0))
    assert flat.status == Status.ZERO_VARIANCE and flat.probability_b_better == 1.0 and flat.expected_loss_b == 0.0
