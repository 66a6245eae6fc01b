"""Bayesian readout of a lift: probability that B beats A and the expected loss of each choice.

Which model, and why: a normal posterior on the delta-method lift with a flat prior, i.e. the lift is
``N(estimate, se^2)`` a posteriori (GrowthBook's default engine with an uninformative prior). A Beta-Binomial per
arm would treat every impression as an independent coin, but a user's impressions are correlated (the user is the
randomisation unit), so its posterior would be too narrow; the delta-method standard error already accounts for
that, and with hundreds of users per arm the normal likelihood is what the frequentist interval uses too, so the
two readouts answer from the same evidence: ``P(B better) = 1 - p/2`` exactly when the lift is positive.

Expected loss (Chris Stucchio's decision rule, used by VWO and GrowthBook): shipping B loses ``E[max(0, A - B)]``,
keeping A loses ``E[max(0, B - A)]``; both in the metric's own units. All integrals come from scipy's normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from abtest.experiment.stats.config import Status
from abtest.experiment.stats.ratio import Estimate


@dataclass(frozen=True)
class BayesResult:
    """Posterior of the lift B - A: its probability of being positive, a credible interval and expected losses."""

    status: Status
    mean: float
    sd: float
    probability_b_better: float
    credible_low: float
    credible_high: float
    expected_loss_b: float  # E[max(0, A - B)]: what shipping B costs if B is in fact worse
    expected_loss_a: float  # E[max(0, B - A)]: what keeping A costs if B is in fact better


def normal_posterior(estimate: Estimate | None, *, credibility: float = 0.95) -> BayesResult:
    """The flat-prior normal posterior of a lift estimate (NaNs and a coded status when there is no estimate)."""
    if estimate is None or not math.isfinite(estimate.se):
        nan = math.nan
        return BayesResult(Status.ZERO_TRAFFIC, nan, nan, nan, nan, nan, nan, nan)
    mean, sd = estimate.effect, estimate.se
    if sd <= 0:
        better = 1.0 if mean > 0 else 0.0 if mean < 0 else 0.5
        return BayesResult(Status.ZERO_VARIANCE, mean, sd, better, mean, mean, max(0.0, -mean), max(0.0, mean))
    posterior = stats.norm(loc=mean, scale=sd)
    low, high = posterior.interval(credibility)
    # E[max(0, X)] for X ~ N(m, s^2) is m * Phi(m / s) + s * phi(m / s); the loss of B uses X = A - B = -lift.
    z = mean / sd
    gain = mean * stats.norm.cdf(z) + sd * stats.norm.pdf(z)
    loss = -mean * stats.norm.cdf(-z) + sd * stats.norm.pdf(z)
    return BayesResult(
        Status.OK,
        mean=mean,
        sd=sd,
        probability_b_better=float(posterior.sf(0.0)),
        credible_low=float(low),
        credible_high=float(high),
        expected_loss_b=float(loss),
        expected_loss_a=float(gain),
    )
