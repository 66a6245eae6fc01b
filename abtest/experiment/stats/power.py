"""Power and minimum detectable effect of the ratio-metric test for a planned number of users per arm.

The test is a two-sample z-test on the users' delta-method influence values, so statsmodels' ``NormalIndPower``
applies with effect size = absolute lift / per-user standard deviation of the influence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.experiment.stats.config import AnalysisConfig, Status
from abtest.experiment.stats.sufficient import RatioStatistic


def _power_solver():
    """statsmodels' power solver, imported when a power is computed: statsmodels costs steps that only import
    the readout (demo, main's parameter checks) a second of start-up."""
    from statsmodels.stats.power import NormalIndPower

    return NormalIndPower()


@dataclass(frozen=True)
class PowerResult:
    """MDE at ``config.power`` for the planned users, and the per-user standard deviation it was computed from."""

    status: Status
    message: str
    users_control: int
    users_treatment: int
    sigma: float  # per-user standard deviation of the ratio's influence
    baseline_ratio: float
    mde_absolute: float
    mde_relative: float
    power: float


def power_for_effect(
    effect_absolute: float, *, sigma: float, users_control: int, users_treatment: int, alpha: float
) -> float:
    """Probability that the two-sided test at ``alpha`` detects an absolute lift ``effect_absolute``."""
    if sigma <= 0 or users_control < 1 or users_treatment < 1:
        return float("nan")
    return float(
        _power_solver().power(
            effect_size=abs(effect_absolute) / sigma,
            nobs1=users_control,
            alpha=alpha,
            ratio=users_treatment / users_control,
            alternative="two-sided",
        )
    )


def power_analysis(
    baseline: RatioStatistic, *, users_control: int, users_treatment: int, config: AnalysisConfig
) -> PowerResult:
    """MDE for the planned users, with the per-user variance taken from ``baseline`` (e.g. the pooled arms)."""
    sigma = math.sqrt(baseline.linearized_variance) if baseline.n >= 2 and baseline.d_sum > 0 else 0.0
    common = dict(
        users_control=int(users_control),
        users_treatment=int(users_treatment),
        sigma=sigma,
        baseline_ratio=baseline.ratio,
        power=config.power,
    )
    if users_control < 2 or users_treatment < 2:
        return PowerResult(
            Status.ZERO_TRAFFIC,
            "fewer than 2 planned users in an arm",
            mde_absolute=math.nan,
            mde_relative=math.nan,
            **common,
        )
    if sigma <= 0:
        return PowerResult(
            Status.ZERO_VARIANCE,
            "baseline has no per-user variance",
            mde_absolute=math.nan,
            mde_relative=math.nan,
            **common,
        )
    effect_size = _power_solver().solve_power(
        effect_size=None,
        nobs1=users_control,
        alpha=config.alpha,
        power=config.power,
        ratio=users_treatment / users_control,
        alternative="two-sided",
    )
    mde = float(effect_size) * sigma
    relative = mde / baseline.ratio if baseline.ratio > 0 else math.nan
    return PowerResult(Status.OK, "ok", mde_absolute=mde, mde_relative=relative, **common)
