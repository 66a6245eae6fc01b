"""Sequential monitoring: always-valid p-values and confidence sequences for the absolute lift.

The boundary is the two-sided normal-mixture confidence sequence of Howard, Ramdas, McAuliffe & Sekhon (2021,
eq. 14), as GrowthBook and Eppo use it: with ``N`` units in total and per-unit variance ``s2 = N * var(lift)``,

    half-width = sqrt(s2) * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * log(sqrt(N rho^2 + 1) / alpha)),

tightest near ``N* = config.sequential_tuning`` units. Its dual is the mixture SPRT (Johari et al. 2017) with a
N(0, rho^2 s2) prior on the lift: likelihood ratio
``Lambda = (1 + N rho^2)^(-1/2) exp(N rho^2 / (1 + N rho^2) z^2 / 2)`` and always-valid
p-value ``min(1, 1 / Lambda)``, running minimum over looks. The interval excludes 0 exactly
when that p-value is below alpha, so peeking every day keeps the false-positive rate at or below alpha.

Calibration for planned looks. That guarantee holds for continuous monitoring, so with 14 daily looks the boundary
is far too strict: an A/A experiment crosses it about 1% of the time against a 5% budget (measured in
``benchmarks/abstats_validation.py``), which is power thrown away. With ``config.sequential_looks = K`` the mixture
is built at a larger level ``alpha'`` chosen so that the probability of crossing at any of K equally spaced looks
under no effect is ``CALIBRATION_SHARE * alpha`` (:func:`calibrated_level`; the crossing probability is computed
exactly by numerical integration of the z-statistic's Brownian path, Armitage, McPherson & Rowe 1969, as group-
sequential designs are). The reported sequential p-value is scaled by ``alpha / alpha'`` so it still crosses
``alpha`` exactly when the interval excludes 0. Looking more often than planned raises the error rate again, at
most to ``alpha'`` (the continuous-monitoring guarantee at that level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

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


# Share of alpha the calibrated boundary spends on the planned looks. The rest is a margin for what the exact
# Brownian computation leaves out: day sizes that are not equal, variances estimated from a few hundred users, a
# total that is not the planned one. At 0.9 the benchmark's A/A rate was 0.047 [0.041, 0.054] (4,000 experiments
# of 100 users/arm/day, 14 looks): too close to alpha. At 0.8: see benchmarks/abstats_validation.py.
CALIBRATION_SHARE = 0.8
# Points per unit of the z-statistic's scale in the numerical integration (error below 1e-5 at 14 looks).
_GRID_POINTS = 401


def _mixture_scale(level: float) -> float:
    """N* rho^2 of Howard et al.'s choice of rho for a boundary at ``level``."""
    log_term = -2 * math.log(level)
    return log_term + math.log(log_term + 1)


def _z_boundary(level: float, information: np.ndarray) -> np.ndarray:
    """|z| above which the mixture SPRT at ``level`` rejects, at looks with ``information`` = units / N*."""
    scale = _mixture_scale(level) * information
    return np.sqrt((1 + scale) / scale * (2 * math.log(1 / level) + np.log1p(scale)))


def crossing_probability(level: float, looks: int) -> float:
    """P(the mixture boundary at ``level`` is crossed at one of ``looks`` equally spaced looks | no effect).

    The looks see N*/looks, 2 N*/looks, ..., N* units. Recursive numerical integration of the density of the
    score statistic S_k = z_k sqrt(t_k) over the region where the test has not stopped yet.
    """
    times = np.arange(1, looks + 1) / looks
    bounds = _z_boundary(level, times) * np.sqrt(times)
    grid = np.linspace(-bounds[0], bounds[0], _GRID_POINTS)
    density = stats.norm.pdf(grid, scale=math.sqrt(times[0]))
    for k in range(1, looks):
        step = math.sqrt(times[k] - times[k - 1])
        new_grid = np.linspace(-bounds[k], bounds[k], _GRID_POINTS)
        weights = np.full(grid.size, grid[1] - grid[0])
        weights[[0, -1]] /= 2
        # the normal density written out: scipy's pdf costs ten times more on a 401 x 401 grid
        kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / step) ** 2) / (step * math.sqrt(2 * math.pi))
        density, grid = kernel @ (weights * density), new_grid
    return float(1.0 - np.trapezoid(density, grid))


@lru_cache(maxsize=64)
def calibrated_level(alpha: float, looks: int) -> float:
    """The level alpha' whose mixture boundary rejects ``CALIBRATION_SHARE * alpha`` of A/A tests over ``looks``.

    ``looks`` 0 = continuous monitoring: ``alpha`` itself.
    """
    if looks == 0:
        return alpha
    target = CALIBRATION_SHARE * alpha
    if crossing_probability(alpha, looks) >= target:
        return alpha
    excess = lambda level: crossing_probability(level, looks) - target  # noqa: E731
    return float(optimize.brentq(excess, alpha, 0.999, xtol=1e-5))


def boundary_level(config: AnalysisConfig) -> float:
    """The level the mixture boundary is built at: ``alpha``, or the calibrated one for the planned looks."""
    return calibrated_level(config.alpha, config.sequential_looks)


def mixture_rho(config: AnalysisConfig) -> float:
    """Mixing scale that makes the boundary tightest at ``config.sequential_tuning`` units (Howard et al.)."""
    return math.sqrt(_mixture_scale(boundary_level(config)) / config.sequential_tuning)


def confidence_sequence_halfwidth(variance: float, units: int, config: AnalysisConfig) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate with ``variance`` over ``units``."""
    rho2 = mixture_rho(config) ** 2
    s2 = variance * units
    scale = units * rho2 + 1
    level = boundary_level(config)
    return math.sqrt(s2) * math.sqrt(2 * scale / (units**2 * rho2) * math.log(math.sqrt(scale) / level))


def always_valid_p_value(effect: float, variance: float, units: int, config: AnalysisConfig) -> float:
    """Mixture-SPRT p-value of one look (not yet the running minimum), scaled by alpha / alpha' when calibrated."""
    if variance <= 0:
        return 1.0 if effect == 0 else 0.0
    scale = units * mixture_rho(config) ** 2
    z2 = effect * effect / variance
    log_lambda = -0.5 * math.log1p(scale) + scale / (1 + scale) * z2 / 2
    return float(min(1.0, math.exp(-log_lambda) * config.alpha / boundary_level(config)))


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
