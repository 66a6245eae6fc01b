"""The whole offline comparison of A and B on one test split, as one pure function (no MLflow, no files).

Input: the test rows (ids + label), both policies' scores on them in the same order, the training rows (history
counts for segments), the users and items tables, and optionally a finished cross-validation. Output: an
:class:`EvaluationResult` with every table, the decision and the figures; the evaluate step logs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, TREATMENT
from ab_router.schema import LABEL
from abtest.evaluation.bootstrap import BootstrapConfig, MetricComparison, compare_policies, comparison_frame
from abtest.evaluation.decision import NO_WINNER, PRIMARY_METRIC, Decision, decide
from abtest.evaluation.delong import DelongResult, delong_test
from abtest.evaluation.metrics import EvalRows, all_metrics, policy_statistics
from abtest.evaluation.segments import compare_segments, define_segments
from abtest.tracking import tags

if TYPE_CHECKING:  # types only: the figures' libraries load when figures are made, the folds' when they run
    from matplotlib.figure import Figure

    from abtest.evaluation.crossval import CrossValidationResult

WINNER_CODE: dict[str, int] = {TREATMENT: 1, NO_WINNER: 0, CONTROL: -1}


@dataclass(frozen=True)
class EvaluationConfig:
    """The evaluate step's parameters that shape the statistics (their defaults are MLproject's, not here)."""

    alpha: float
    n_bootstrap: int
    k: int
    seed: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be a positive int, got {self.k}")
        BootstrapConfig(n_bootstrap=self.n_bootstrap, alpha=self.alpha, seed=self.seed)  # validates

    @property
    def bootstrap(self) -> BootstrapConfig:
        """The bootstrap part of the configuration."""
        return BootstrapConfig(n_bootstrap=self.n_bootstrap, alpha=self.alpha, seed=self.seed)


@dataclass(frozen=True)
class EvaluationResult:
    """Everything the comparison found."""

    config: EvaluationConfig
    table: list[MetricComparison]
    delong: DelongResult
    decision: Decision
    segments: pd.DataFrame
    cross_validation: CrossValidationResult | None
    n_rows: int
    n_users: int
    n_items: int
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def comparison(self) -> pd.DataFrame:
        """The headline comparison, one metric a row."""
        return comparison_frame(self.table)


def evaluate_policies(
    test: pd.DataFrame,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    train: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    config: EvaluationConfig,
    cross_validation: CrossValidationResult | None = None,
    with_figures: bool = True,
) -> EvaluationResult:
    """Compare A and B on ``test``: metrics with intervals, DeLong, decision, segments, figures."""
    rows = EvalRows.from_frame(test)
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    metrics = all_metrics(config.k)
    table = compare_policies(
        policy_statistics(rows, scores_a, k=config.k),
        policy_statistics(rows, scores_b, k=config.k),
        rows.n_users,
        metrics,
        config.bootstrap,
    )
    delong = delong_test(rows.label, scores_a, scores_b, alpha=config.alpha)
    primary = next(row for row in table if row.metric == PRIMARY_METRIC)
    decision = decide(primary, delong, alpha=config.alpha)
    segments = compare_segments(
        rows, scores_a, scores_b, define_segments(test, train, users, items), config=config.bootstrap, k=config.k
    )
    result = EvaluationResult(
        config=config,
        table=table,
        delong=delong,
        decision=decision,
        segments=segments,
        cross_validation=cross_validation,
        n_rows=rows.n_rows,
        n_users=rows.n_users,
        n_items=rows.n_items,
    )
    if with_figures:
        result.figures.update(
            make_figures(result, test[LABEL].to_numpy(), {CONTROL: scores_a, TREATMENT: scores_b})
        )
    return result


def make_figures(result: EvaluationResult, labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, Figure]:
    """Every figure of the report, by name (the name is also the PNG artifact's file name)."""
    from abtest.evaluation import plots  # matplotlib and seaborn: only for the figures

    figures = {
        "metrics": plots.metrics_figure(result.comparison),
        "roc": plots.roc_figure(labels, scores),
        "precision_recall": plots.precision_recall_figure(labels, scores),
        "calibration": plots.calibration_figure(labels, scores),
        "lift_gain": plots.lift_gain_figure(labels, scores),
    }
    if "diff" in result.segments and result.segments["diff"].notna().any():
        figures["segments"] = plots.segment_heatmap(result.segments)
    if result.cross_validation is not None:
        figures["cross_validation"] = plots.cross_validation_figure(result.cross_validation.folds)
    return figures


def headline_metrics(result: EvaluationResult) -> dict[str, float]:
    """The numbers logged as metrics of the evaluate run.

    ``a.<metric>`` / ``b.<metric>`` with ``.ci_low`` / ``.ci_high``, ``diff.<metric>`` (B − A) with its interval
    and bootstrap ``.p_value`` (coverage: point values only, its resampled intervals are biased), ``delong.*``,
    ``decision.*`` (winner code: 1 = B, 0 = none, −1 = A) and ``cv.*`` (mean and std over folds, corrected p of
    the paired difference).
    """
    out: dict[str, float] = {}
    for row in result.table:
        name = row.metric
        out |= {f"a.{name}": row.a, f"a.{name}.ci_low": row.a_low, f"a.{name}.ci_high": row.a_high}
        out |= {f"b.{name}": row.b, f"b.{name}.ci_low": row.b_low, f"b.{name}.ci_high": row.b_high}
        out |= {
            f"diff.{name}": row.diff,
            f"diff.{name}.ci_low": row.diff_low,
            f"diff.{name}.ci_high": row.diff_high,
            f"diff.{name}.p_value": row.p_value,
        }
    delong = result.delong
    out |= {
        "delong.auc_diff": delong.difference,
        "delong.std_error": delong.std_error,
        "delong.z": delong.z,
        "delong.p_value": delong.p_value,
        "delong.ci_low": delong.ci_low,
        "delong.ci_high": delong.ci_high,
    }
    out |= {
        "decision.winner_code": float(WINNER_CODE[result.decision.winner]),
        "decision.b_wins": float(result.decision.winner == TREATMENT),
        "decision.a_wins": float(result.decision.winner == CONTROL),
        "test.rows": float(result.n_rows),
        "test.users": float(result.n_users),
        "test.items": float(result.n_items),
    }
    if result.cross_validation is not None:
        for row in result.cross_validation.summary.itertuples():
            out |= {
                f"cv.a.{row.metric}.mean": row.a_mean,
                f"cv.a.{row.metric}.std": row.a_std,
                f"cv.b.{row.metric}.mean": row.b_mean,
                f"cv.b.{row.metric}.std": row.b_std,
                f"cv.diff.{row.metric}.mean": row.diff_mean,
                f"cv.diff.{row.metric}.std": row.diff_std,
                f"cv.diff.{row.metric}.p_value": row.p_value,
            }
    return {name: float(value) for name, value in out.items() if value is not None and not math.isnan(value)}


def decision_tags(result: EvaluationResult) -> dict[str, str]:
    """The decision as run tags (``abtest.decision`` is what `main` and a reviewer read)."""
    return {
        tags.DECISION: result.decision.label,
        tags.WINNER: result.decision.winner,
        tags.DECISION_REASON: tags.cut(result.decision.reason),
        tags.PRIMARY_METRIC: result.decision.primary_metric,
    }
