"""Sample ratio mismatch: are the arms' unit counts consistent with the configured split?

A mismatch (Fabijan et al. 2019) means assignment or logging is broken, and every other number of the readout is
suspect. Chi-square goodness of fit against the configured shares, flagged at ``config.srm_threshold`` (0.001, the
threshold GrowthBook, Optimizely and Microsoft's ExP use, so that daily checks rarely false-alarm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from abtest.experiment.stats.config import AnalysisConfig, Status


@dataclass(frozen=True)
class SrmResult:
    """Chi-square SRM check; ``flagged`` means p < threshold."""

    status: Status
    message: str
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    flagged: bool


def srm_test(observed: Sequence[int], config: AnalysisConfig) -> SrmResult:
    """Chi-square test of the per-arm unit counts (control first) against ``config.expected_split``."""
    counts = np.asarray(observed, dtype=np.float64)
    split = np.asarray(config.expected_split)
    if counts.shape != split.shape:
        raise ValueError(f"srm_test needs one count per configured arm ({split.size}), got {list(observed)}")
    if np.any(counts < 0):
        raise ValueError(f"srm_test counts must be >= 0, got {list(observed)}")
    total = counts.sum()
    expected = split * total
    observed_tuple = tuple(int(c) for c in counts)
    if total == 0:
        return SrmResult(Status.ZERO_TRAFFIC, "no units yet", observed_tuple, tuple(expected), 0.0, 1.0, False)
    statistic, p_value = stats.chisquare(counts, expected)
    flagged = bool(p_value < config.srm_threshold)
    message = (
        f"sample ratio mismatch: p = {p_value:.2g} < {config.srm_threshold:g}; assignment or logging is broken"
        if flagged
        else f"no sample ratio mismatch (p = {p_value:.3g})"
    )
    return SrmResult(
        Status.OK,
        message,
        observed_tuple,
        tuple(float(e) for e in expected),
        float(statistic),
        float(p_value),
        flagged,
    )
