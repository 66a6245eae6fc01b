"""Holm's step-down correction across the secondary metrics (statsmodels ``multipletests``).

The primary metric is tested at the plan's alpha alone (it was chosen before the data); every secondary metric is
one more chance of a false "B is better", so their p-values are adjusted together, controlling the family-wise
error rate at alpha without Bonferroni's loss of power (Holm 1979).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AdjustedPValue:
    """One secondary metric's p-value before and after Holm's correction, and whether it is significant."""

    metric: str
    p_value: float
    adjusted_p_value: float
    significant: bool


def holm(p_values: Mapping[str, float], *, alpha: float) -> dict[str, AdjustedPValue]:
    """Holm-adjusted p-values by metric; a NaN p-value (no estimate) stays NaN and is not counted in the family."""
    finite = {metric: p for metric, p in p_values.items() if math.isfinite(p)}
    adjusted: dict[str, AdjustedPValue] = {
        metric: AdjustedPValue(metric, p, math.nan, False)
        for metric, p in p_values.items()
        if metric not in finite
    }
    if finite:
        from statsmodels.stats.multitest import multipletests  # on first use: statsmodels is slow to import

        reject, corrected, _, _ = multipletests(list(finite.values()), alpha=alpha, method="holm")
        for (metric, p), is_significant, value in zip(finite.items(), reject, corrected, strict=True):
            adjusted[metric] = AdjustedPValue(metric, p, float(value), bool(is_significant))
    return {metric: adjusted[metric] for metric in p_values}
