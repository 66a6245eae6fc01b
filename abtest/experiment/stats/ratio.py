"""Fixed-horizon test of a ratio metric (CTR) between two arms, users as the unit, delta method, optional CUPED.

The ratio's variance comes from the delta method on per-user sums (Deng et al. 2018, "Applying the Delta Method
in Metric Analytics"); the relative lift's variance from the delta method on the ratio of the two arms' ratios.
CUPED (Deng et al. 2013) subtracts ``theta * (mean covariate - pooled mean covariate)`` from each arm, with theta
estimated on both arms pooled; the covariate is pre-period activity, so it is independent of the assignment and
the adjusted estimate stays unbiased while its variance shrinks by the squared correlation.

Intervals and p-values are normal (z): the unit counts here are hundreds to thousands of users, and the same
normal approximation underlies the sequential test and the statsmodels power analysis, so the three agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats

from abtest.experiment.stats.config import AnalysisConfig, Status
from abtest.experiment.stats.sufficient import RatioStatistic


@dataclass(frozen=True)
class Estimate:
    """A lift with its standard error, two-sided (1 - alpha) interval and p-value against 0."""

    effect: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class ArmSummary:
    """What a reader sees per arm: units, numerator, denominator and the (CUPED-adjusted, if used) ratio."""

    units: int
    numerator: float
    denominator: float
    ratio: float
    adjusted_ratio: float


@dataclass(frozen=True)
class LiftResult:
    """Treatment vs control. ``absolute``/``relative`` are None when ``status`` says they cannot be computed."""

    status: Status
    message: str
    control: ArmSummary
    treatment: ArmSummary
    absolute: Estimate | None = None
    relative: Estimate | None = None
    cuped: bool = False
    theta: float = 0.0
    variance_reduction: float = 0.0  # 1 - var(adjusted) / var(unadjusted) of the absolute lift

    @property
    def significant(self) -> bool:
        """Whether the absolute lift's interval excludes 0."""
        return self.absolute is not None and not (self.absolute.ci_low <= 0.0 <= self.absolute.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (status as its string code)."""
        out = asdict(self)
        out["status"] = str(self.status)
        return out


def _estimate(effect: float, variance: float, alpha: float) -> Estimate:
    se = math.sqrt(variance)
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    p_value = float(2 * stats.norm.sf(abs(effect) / se)) if se > 0 else (1.0 if effect == 0 else 0.0)
    return Estimate(
        effect=effect, se=se, ci_low=effect - z_crit * se, ci_high=effect + z_crit * se, p_value=p_value
    )


def _summary(stat: RatioStatistic, adjusted_ratio: float) -> ArmSummary:
    return ArmSummary(
        units=stat.n, numerator=stat.m_sum, denominator=stat.d_sum, ratio=stat.ratio, adjusted_ratio=adjusted_ratio
    )


def cuped_theta(control: RatioStatistic, treatment: RatioStatistic) -> float:
    """CUPED coefficient cov(influence, x) / var(x), pooled over both arms (0 if the covariate is constant)."""
    dof = control.n + treatment.n - 2
    var_x = ((control.n - 1) * control.var_x + (treatment.n - 1) * treatment.var_x) / dof
    if var_x <= 0:
        return 0.0
    cov = (
        (control.n - 1) * control.linearized_covariance_x + (treatment.n - 1) * treatment.linearized_covariance_x
    ) / dof
    return cov / var_x


def ratio_lift(
    control: RatioStatistic, treatment: RatioStatistic, config: AnalysisConfig, *, cuped: bool = False
) -> LiftResult:
    """Absolute (B - A) and relative (B / A - 1) lift of a ratio metric with delta-method intervals.

    Degenerate inputs return a result with a non-OK ``status`` instead of raising.
    """
    blank = LiftResult(
        status=Status.OK,
        message="",
        control=_summary(control, control.ratio),
        treatment=_summary(treatment, treatment.ratio),
        cuped=cuped,
    )
    if control.n < 2 or treatment.n < 2:
        return _replace(blank, Status.ZERO_TRAFFIC, f"need >= 2 users per arm, got {control.n} and {treatment.n}")
    if control.d_sum <= 0 or treatment.d_sum <= 0:
        return _replace(
            blank,
            Status.NO_DENOMINATOR,
            f"an arm has no impressions (control {control.d_sum:g}, treatment {treatment.d_sum:g})",
        )

    theta = cuped_theta(control, treatment) if cuped else 0.0
    pooled_x = (control.x_sum + treatment.x_sum) / (control.n + treatment.n)
    ratios, variances, raw_variance = [], [], 0.0
    for arm in (control, treatment):
        raw = arm.linearized_variance
        adjusted = raw - 2 * theta * arm.linearized_covariance_x + theta * theta * arm.var_x
        ratios.append(arm.ratio - theta * (arm.mean_x - pooled_x))
        variances.append(max(adjusted, 0.0) / arm.n)
        raw_variance += raw / arm.n
    (ratio_a, ratio_b), (var_a, var_b) = ratios, variances
    summaries = {"control": _summary(control, ratio_a), "treatment": _summary(treatment, ratio_b)}
    variance = var_a + var_b
    if variance <= 0:
        return LiftResult(
            status=Status.ZERO_VARIANCE,
            message=f"no variance between users in either arm (CTR {ratio_a:.4g} vs {ratio_b:.4g}): no test",
            cuped=cuped,
            theta=theta,
            **summaries,
        )
    absolute = _estimate(ratio_b - ratio_a, variance, config.alpha)
    reduction = 1.0 - variance / raw_variance if raw_variance > 0 else 0.0
    common = dict(cuped=cuped, theta=theta, variance_reduction=reduction, absolute=absolute, **summaries)
    if ratio_a <= 0:
        return LiftResult(
            status=Status.ZERO_BASELINE,
            message=f"control CTR is {ratio_a:g}: relative lift undefined, absolute lift reported",
            **common,
        )
    relative_variance = var_b / ratio_a**2 + ratio_b**2 * var_a / ratio_a**4
    relative = _estimate(ratio_b / ratio_a - 1.0, relative_variance, config.alpha)
    return LiftResult(status=Status.OK, message="ok", relative=relative, **common)


def _replace(result: LiftResult, status: Status, message: str) -> LiftResult:
    return LiftResult(**{**result.__dict__, "status": status, "message": message})
