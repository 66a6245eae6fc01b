"""Guardrails: non-inferiority of B against A with the analysis plan's margins.

A guardrail is a quantity where higher is worse (miscalibration, cold-start share, latency). B holds it when the
one-sided ``1 - alpha`` upper confidence bound of ``B - A`` stays below the plan's margin: the data must show that
B is not worse by more than the margin, not merely fail to show that it is worse (the burden of proof of a
non-inferiority test, FDA 2016 guidance; Eppo and Statsig guardrails work the same way).

Per-user ratios (score minus click per impression, cold impressions per impression) get delta-method variances
from their per-user influence values, as :mod:`.ratio` does for CTR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from abtest.experiment.stats.config import Status


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio sum(m) / sum(d) over users and its delta-method variance (m may be negative)."""

    value: float
    variance: float


@dataclass(frozen=True)
class GuardrailResult:
    """One guardrail: each arm's value, B - A with its one-sided upper bound, the margin and the verdict."""

    name: str
    control: float
    treatment: float
    difference: float
    se: float  # NaN when only point values are known (then the verdict is on the point difference)
    upper_bound: float
    margin: float
    held: bool
    status: Status
    message: str


def ratio_estimate(numerator: ArrayLike, denominator: ArrayLike) -> RatioEstimate:
    """sum(m) / sum(d) with variance var((m - R d) / mean(d)) / n; NaN without users or a denominator."""
    m = np.asarray(numerator, dtype=np.float64)
    d = np.asarray(denominator, dtype=np.float64)
    if m.size < 2 or d.sum() <= 0:
        return RatioEstimate(math.nan, math.nan)
    ratio = m.sum() / d.sum()
    influence = (m - ratio * d) / d.mean()
    return RatioEstimate(float(ratio), float(influence.var(ddof=1) / m.size))


def non_inferiority(
    name: str, *, control: float, treatment: float, se: float, margin: float, alpha: float
) -> GuardrailResult:
    """Guardrail ``name`` holds when the upper ``1 - alpha`` bound of ``treatment - control`` is below ``margin``.

    ``se`` NaN (e.g. latency, whose arms are known only as medians) judges the point difference instead, and the
    message says so.
    """
    difference = treatment - control
    if not (math.isfinite(control) and math.isfinite(treatment)):
        return GuardrailResult(
            name,
            control,
            treatment,
            math.nan,
            se,
            math.nan,
            margin,
            False,
            Status.ZERO_TRAFFIC,
            f"{name}: not measured in both arms (A {control:g}, B {treatment:g}); it cannot be shown held",
        )
    if math.isfinite(se):
        upper = difference + float(stats.norm.ppf(1 - alpha)) * se
        held = upper < margin
        basis = f"upper {1 - alpha:.0%} bound of B - A = {upper:+.4g}"
    else:
        upper = difference
        held = difference <= margin
        basis = f"B - A = {difference:+.4g} (point values: no interval)"
    verdict = "held" if held else "NOT held"
    message = f"{name} {verdict}: {basis}, margin {margin:g}"
    return GuardrailResult(name, control, treatment, difference, se, upper, margin, held, Status.OK, message)
