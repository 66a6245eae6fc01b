"""Sequential monitoring: always-valid p-values and confidence sequences for the absolute lift.

The boundary is the two-sided normal-mixture confidence sequence of Howard, Ramdas, McAuliffe & Sekhon (2021,
eq. 14), as GrowthBook and Eppo use it: with ``N`` units in total and per-unit variance ``s2 = N * var(lift)``,

    half-width = sqrt(s2) * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * log(sqrt(N rho^2 + 1) / alpha)),

tightest near ``N* = config.sequential_tuning`` units. Its dual is the mixture SPRT (Johari et al. 2017) with a
N(0, rho^2 s2) prior on the lift: likelihood ratio
``Lambda = (1 + N rho^2)^(-1/2) exp(N rho^2 / (1 + N rho^2) z^2 / 2)`` and always-valid
p-value ``min(1, 1 / Lambda)``, running minimum over looks. The interval excludes 0 exactly
when that p-value is below alpha, so peeking every day keeps the false-positive rate at or below alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abtest.experiment.stats.config import AnalysisConfig, Status
from abtest.experiment.stats.ratio import ratio_lift
from abtest.experiment.stats.sufficient import RatioStatistic


@dataclass(frozen=True)
class SequentialLook:
    """One interim look: the lift, its confidence-sequence bounds and always-valid p-value (both running)."""

    status: Status
    units: int
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    stop: bool  # the interval excludes 0 (p < alpha): the test could stop here


def mixture_rho(config: AnalysisConfig) -> float:
    """Mixing scale that makes the boundary tightest at ``config.sequential_tuning`` units (Howard et al.)."""
    log_term = -2 * math.log(config.alpha)
    return math.sqrt((log_term + math.log(log_term + 1)) / config.sequential_tuning)


def confidence_sequence_halfwidth(variance: float, units: int, config: AnalysisConfig) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate with ``variance`` over ``units``."""
    rho2 = mixture_rho(config) ** 2
    s2 = variance * units
    scale = units * rho2 + 1
    return math.sqrt(s2) * math.sqrt(2 * scale / (units**2 * rho2) * math.log(math.sqrt(scale) / config.alpha))


def always_valid_p_value(effect: float, variance: float, units: int, config: AnalysisConfig) -> float:
    """Mixture-SPRT p-value of one look (not yet the running minimum)."""
    if variance <= 0:
        return 1.0 if effect == 0 else 0.0
    scale = units * mixture_rho(config) ** 2
    z2 = effect * effect / variance
    log_lambda = -0.5 * math.log1p(scale) + scale / (1 + scale) * z2 / 2
    return float(min(1.0, math.exp(-log_lambda)))


def sequential_lift(control: RatioStatistic, treatment: RatioStatistic, config: AnalysisConfig) -> SequentialLook:
    """One look, not accumulated: the lift with its confidence-sequence bounds and mSPRT p-value."""
    fixed = ratio_lift(control, treatment, config)
    units = control.n + treatment.n
    if fixed.absolute is None:
        return SequentialLook(fixed.status, units, math.nan, -math.inf, math.inf, 1.0, False)
    effect, variance = fixed.absolute.effect, fixed.absolute.se**2
    half = confidence_sequence_halfwidth(variance, units, config)
    p_value = always_valid_p_value(effect, variance, units, config)
    return SequentialLook(Status.OK, units, effect, effect - half, effect + half, p_value, p_value < config.alpha)


def monitor(
    looks: Sequence[tuple[RatioStatistic, RatioStatistic]], config: AnalysisConfig
) -> tuple[list[SequentialLook], int | None]:
    """Cumulative looks (e.g. one per day) -> running looks and the index of the first look that could stop.

    The running p-value is the minimum so far and the running interval the intersection so far: both stay valid
    because the guarantee holds simultaneously over all looks.
    """
    running: list[SequentialLook] = []
    low, high, p_min, first_stop = -math.inf, math.inf, 1.0, None
    for index, (control, treatment) in enumerate(looks):
        look = sequential_lift(control, treatment, config)
        if look.status == Status.OK:
            low, high, p_min = max(low, look.ci_low), min(high, look.ci_high), min(p_min, look.p_value)
        stop = p_min < config.alpha
        if stop and first_stop is None:
            first_stop = index
        running.append(SequentialLook(look.status, look.units, look.effect, low, high, p_min, stop))
    return running, first_stop
