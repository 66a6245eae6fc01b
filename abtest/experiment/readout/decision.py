"""The readout's decision: which analysis it rests on (CUPED or unadjusted) and the one sentence a product owner
acts on. Kept apart from the statistics so the rule can be read, and changed, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from abtest.experiment.stats import (
    LiftResult,
)

if TYPE_CHECKING:
    from abtest.experiment.readout.analysis import ExperimentReadout


def decision_lift(readout: ExperimentReadout) -> LiftResult:
    """The analysis the decision rests on: CUPED, unless it made the lift's variance larger (or gave no estimate).

    CUPED's theta is estimated from the same few users it adjusts; with small arms or a covariate unrelated to
    clicks that estimate can be noisy enough to widen the interval instead of narrowing it. The choice looks
    only at the variances, never at the effect, so it does not favour either arm.
    """
    cuped, unadjusted = readout.cuped, readout.lift
    if unadjusted.absolute is not None and (cuped.absolute is None or cuped.variance_reduction < 0):
        return unadjusted
    return cuped


def variance_change_text(variance_reduction: float) -> str:
    """CUPED's effect on the lift's variance as a signed share: reduction 0.12 -> "-12%", -0.95 -> "+95%"."""
    change = -variance_reduction
    return "+0%" if round(abs(change), 2) == 0 else f"{change:+.0%}"


def decision_sentence(readout: ExperimentReadout) -> str:
    """One sentence a product owner can act on, with the evidence that decides it."""
    if readout.srm.flagged:
        return (
            f"Do not decide: sample ratio mismatch (users A {readout.srm.observed[0]}, "
            f"B {readout.srm.observed[1]}, p = {readout.srm.p_value:.2g} < {readout.config.srm_threshold:g}); "
            "fix assignment or logging and rerun."
        )
    result = decision_lift(readout)
    if result.absolute is None:
        return f"No decision possible: {result.message}."
    estimate = result.absolute
    level = f"{1 - readout.config.alpha:.0%}"
    relative = f" ({result.relative.effect:+.1%} relative)" if result.relative is not None else ""
    change = variance_change_text(readout.cuped.variance_reduction)
    if result is readout.cuped:
        method = f"CUPED, variance {change}"
    elif readout.cuped.absolute is None:
        method = f"unadjusted delta method: CUPED gave no estimate, {readout.cuped.message}"
    else:
        method = f"unadjusted delta method: CUPED would have increased the variance by {change[1:]}, so not used"
    evidence = (
        f"CTR lift B - A = {estimate.effect:+.4f}{relative}, {level} CI [{estimate.ci_low:+.4f}, "
        f"{estimate.ci_high:+.4f}], p = {estimate.p_value:.3g} ({method})"
    )
    stop = (
        f"; the sequential test could have stopped on day {readout.stop_day}"
        if readout.stop_day is not None
        else "; the sequential test never crossed its boundary"
    )
    caveat = f" Guardrails: {'; '.join(readout.warnings)}." if readout.warnings else ""
    if estimate.ci_low > 0:
        verdict = "Ship policy B: it raises CTR"
    elif estimate.ci_high < 0:
        verdict = "Keep policy A: policy B lowers CTR"
    else:
        mde = readout.power.mde_absolute
        verdict = "No significant difference between the policies" + (
            f" (the test could detect a lift of ±{mde:.4f} with {readout.config.power:.0%} power)"
            if np.isfinite(mde)
            else ""
        )
    return f"{verdict}: {evidence}{stop}.{caveat}"
