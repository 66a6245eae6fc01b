"""The weighted metrics of abtest.evaluation.metrics against scikit-learn, and their input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from abtest.evaluation.bootstrap import BootstrapConfig
from abtest.evaluation.metrics import EvalRows, all_metrics, metric_values, point_metrics, policy_statistics
from tests.fixtures.frames import user_effect_rows as _synthetic


def test_point_metrics_equal_scikit_learn():
    frame, score_a, _ = _synthetic()
    rows = EvalRows.from_frame(frame)
    values = point_metrics(policy_statistics(rows, score_a, k=5), all_metrics(5))
    y = frame["label"].to_numpy()
    assert values["auc"] == pytest.approx(skm.roc_auc_score(y, score_a), abs=1e-12)
    assert values["pr_auc"] == pytest.approx(skm.average_precision_score(y, score_a), abs=1e-12)
    assert values["logloss"] == pytest.approx(skm.log_loss(y, score_a), abs=1e-12)
    assert values["brier"] == pytest.approx(skm.brier_score_loss(y, score_a), abs=1e-12)
    bins = np.minimum((score_a * 10).astype(int), 9)
    ece = sum(abs(y[bins == b].sum() - score_a[bins == b].sum()) for b in range(10)) / len(y)
    assert values["ece"] == pytest.approx(ece, abs=1e-12)
    per_user = frame.assign(score=score_a).groupby("user_id")
    ndcg = [skm.ndcg_score([g["label"]], [g["score"]], k=5) for _, g in per_user if g["label"].sum() > 0]
    hits = [g.nlargest(5, "score")["label"].max() for _, g in per_user if g["label"].sum() > 0]
    precision = [g.nlargest(5, "score")["label"].mean() for _, g in per_user if g["label"].sum() > 0]
    top_items = {i for _, g in per_user for i in g.nlargest(5, "score")["item_id"]}
    assert values["ndcg_at_5"] == pytest.approx(np.mean(ndcg), abs=1e-12)
    assert values["hitrate_at_5"] == pytest.approx(np.mean(hits), abs=1e-12)
    assert values["precision_at_5"] == pytest.approx(np.mean(precision), abs=1e-12)
    assert values["coverage_at_5"] == pytest.approx(len(top_items) / frame["item_id"].nunique(), abs=1e-12)


def test_user_weights_equal_repeating_the_users_rows():
    frame, score_a, _ = _synthetic(n_users=30, per_user=8)
    rows = EvalRows.from_frame(frame)
    stats = policy_statistics(rows, score_a, k=3)
    weights = np.zeros(rows.n_users)
    draws = [0, 1, 1, 5, 7, 7, 7, 12, 20, 29]
    np.add.at(weights, draws, 1)
    weighted = metric_values(stats, weights[None, :], ["auc", "pr_auc", "logloss", "ndcg_at_3"])
    repeated = pd.concat(
        [frame[frame["user_id"] == u + 1].assign(score=score_a[frame["user_id"] == u + 1]) for u in draws]
    )
    y, s = repeated["label"], repeated["score"]
    assert weighted["auc"][0] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert weighted["pr_auc"][0] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert weighted["logloss"][0] == pytest.approx(skm.log_loss(y, s), abs=1e-12)


def test_config_and_rows_validation():
    with pytest.raises(ValueError, match="n_bootstrap"):
        BootstrapConfig(n_bootstrap=0, alpha=0.05, seed=42)
    with pytest.raises(ValueError, match="alpha"):
        BootstrapConfig(alpha=1.5, n_bootstrap=1000, seed=42)
    with pytest.raises(ValueError, match="missing columns"):
        EvalRows.from_frame(pd.DataFrame({"user_id": [1]}))
    rows = EvalRows.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "label": [0, 1]}))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        policy_statistics(rows, np.array([0.1, 0.2, 0.3]), k=10)
    with pytest.raises(ValueError, match="probabilities"):
        policy_statistics(rows, np.array([0.1, 1.2]), k=10)
