"""Paired, user-clustered bootstrap intervals for A, B and B − A (the decision rule is :mod:`.decision`).

Rows of one user are correlated (one taste, one rating habit), so resampling rows would give intervals that are
too narrow. Each replicate draws users with replacement (multinomial counts over users) and weights every row of
a user by how often the user was drawn. A and B are evaluated with the SAME draws, so the difference B − A of each
replicate is paired and its interval reflects the correlation between the two policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from abtest.evaluation.metrics import (
    PolicyStatistics,
    has_bootstrap_interval,
    higher_is_better,
    metric_values,
    point_metrics,
)


@dataclass(frozen=True)
class BootstrapConfig:
    """How many replicates, at which level, from which seed (evaluate's MLproject parameters; no defaults here)."""

    n_bootstrap: int
    alpha: float
    seed: int

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be a positive int, got {self.n_bootstrap}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class MetricComparison:
    """One metric for A and B with percentile intervals, and the paired difference B − A.

    Intervals and p are NaN for metrics without a valid bootstrap interval (coverage). ``uninformative``: both
    policies sit at the same bound of the metric (0 or 1) at the point estimate and on every replicate, so the
    metric cannot tell them apart on these rows (e.g. hit rate when every user has many positives).
    """

    metric: str
    a: float
    a_low: float
    a_high: float
    b: float
    b_low: float
    b_high: float
    diff: float
    diff_low: float
    diff_high: float
    p_value: float
    higher_is_better: bool
    uninformative: bool = False

    @property
    def b_better(self) -> bool:
        """The whole interval of B − A lies on B's better side of 0."""
        return self.diff_low > 0 if self.higher_is_better else self.diff_high < 0

    @property
    def a_better(self) -> bool:
        """The whole interval of B − A lies on A's better side of 0."""
        return self.diff_high < 0 if self.higher_is_better else self.diff_low > 0


def user_weights(n_users: int, n_replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates x users: how many times each user is drawn when drawing ``n_users`` users with replacement."""
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_replicates).astype(float)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "B − A = 0": twice the smaller tail share at 0, with the +1 correction.

    An exactly-zero difference counts towards both tails, so identical policies get p = 1.
    """
    finite = differences[np.isfinite(differences)]
    if len(finite) == 0:
        return float("nan")
    at_most = (1 + np.sum(finite <= 0)) / (1 + len(finite))
    at_least = (1 + np.sum(finite >= 0)) / (1 + len(finite))
    return float(min(1.0, 2.0 * min(at_most, at_least)))


def at_bound(*values: np.ndarray) -> bool:
    """Every value is 0, or every value is 1 (a metric pinned at the end of its range)."""
    joined = np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in values])
    return bool(len(joined)) and bool(np.all(joined == 0.0) or np.all(joined == 1.0))


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def compare_policies(
    stats_a: PolicyStatistics,
    stats_b: PolicyStatistics,
    n_users: int,
    metrics: Sequence[str],
    config: BootstrapConfig,
) -> list[MetricComparison]:
    """Point estimates and paired user-clustered bootstrap intervals for every metric, A, B and B − A.

    Set-size metrics (coverage) get point values only: NaN intervals and p (see ``metrics.SET_SIZE_METRIC_STEMS``).
    """
    rng = np.random.default_rng(config.seed)
    weights = user_weights(n_users, config.n_bootstrap, rng)
    point_a, point_b = point_metrics(stats_a, metrics), point_metrics(stats_b, metrics)
    resampled = [m for m in metrics if has_bootstrap_interval(m)]
    reps_a, reps_b = metric_values(stats_a, weights, resampled), metric_values(stats_b, weights, resampled)
    no_replicates = np.full(config.n_bootstrap, np.nan)
    table = []
    for metric in metrics:
        rep_a, rep_b = reps_a.get(metric, no_replicates), reps_b.get(metric, no_replicates)
        differences = rep_b - rep_a
        a_low, a_high = _interval(rep_a, config.alpha)
        b_low, b_high = _interval(rep_b, config.alpha)
        d_low, d_high = _interval(differences, config.alpha)
        pinned = metric in reps_a and at_bound(point_a[metric], point_b[metric], rep_a, rep_b)
        table.append(
            MetricComparison(
                metric=metric,
                a=point_a[metric],
                a_low=a_low,
                a_high=a_high,
                b=point_b[metric],
                b_low=b_low,
                b_high=b_high,
                diff=point_b[metric] - point_a[metric],
                diff_low=d_low,
                diff_high=d_high,
                p_value=bootstrap_p_value(differences),
                higher_is_better=higher_is_better(metric),
                uninformative=pinned,
            )
        )
    return table


def comparison_frame(table: Sequence[MetricComparison]) -> pd.DataFrame:
    """The comparison as a table, one metric a row (the CSV/JSON artifact and the report's headline table)."""
    return pd.DataFrame([asdict(row) for row in table])
