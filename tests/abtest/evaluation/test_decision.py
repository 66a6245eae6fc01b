"""The decision rule of abtest.evaluation.decision: its reason when DeLong and the clustered interval disagree."""

from __future__ import annotations

from abtest.evaluation.bootstrap import MetricComparison
from abtest.evaluation.decision import decide
from abtest.evaluation.delong import DelongResult


def _delong(z: float, p: float) -> DelongResult:
    return DelongResult(0.70, 0.71, 0.01, 0.01 / z, z, p, 0.005, 0.015, 100, 100)


def _auc_row(low: float, high: float) -> MetricComparison:
    return MetricComparison("auc", 0.70, 0.6, 0.8, 0.71, 0.6, 0.8, 0.01, low, high, 0.2, True)


def test_decision_reason_explains_why_delong_and_the_clustered_interval_disagree():
    reason = decide(_auc_row(-0.004, 0.02), _delong(4.31, 1.66e-5), alpha=0.05).reason
    assert reason.startswith("No significant difference:") and "DeLong z = 4.31, p = 1.66e-05" in reason
    assert "DeLong treats every row as independent" in reason and "covers 0" in reason
    agreeing = decide(_auc_row(-0.004, 0.02), _delong(1.0, 0.32), alpha=0.05).reason
    assert "independent" not in agreeing
