"""The weighted metrics of abtest.evaluation.metrics against scikit-learn, and their input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from abtest.evaluation.bootstrap import BootstrapConfig, user_weights
from abtest.evaluation.metrics import (
    EvalRows,
    _dense_auc_ap,
    all_metrics,
    metric_values,
    point_metrics,
    policy_statistics,
)
from tests.fixtures.frames import ranked_rows
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


def _tied_rows(seed: int = 3):
    """Rows whose scores are rounded to two decimals: ties within a user, across users and across labels."""
    frame, score_a, _ = _synthetic(n_users=40, per_user=15, seed=seed)
    return frame, np.round(score_a, 2)


def test_replicates_equal_the_dense_per_level_sums_bit_for_bit():
    """The per-positive-level replicate path gives exactly what the dense (replicates x every level) form gives."""
    frame, scores = _tied_rows()
    rows = EvalRows.from_frame(frame)
    stats = policy_statistics(rows, scores, k=5)
    weights = user_weights(rows.n_users, 300, np.random.default_rng(11))
    fast = metric_values(stats, weights, ["auc", "pr_auc"])
    dense_auc, dense_ap = _dense_auc_ap(stats, weights)
    assert np.array_equal(fast["auc"], dense_auc)
    assert np.array_equal(fast["pr_auc"], dense_ap)
    assert len(np.unique(scores)) < len(scores) / 3  # the fixture really ties


def test_replicates_equal_scikit_learn_on_each_replicates_rows():
    """Each replicate's AUC and average precision = scikit-learn's on the rows weighted by their user's draws."""
    frame, scores = _tied_rows(seed=5)
    rows = EvalRows.from_frame(frame)
    stats = policy_statistics(rows, scores, k=5)
    weights = user_weights(rows.n_users, 25, np.random.default_rng(2))
    fast = metric_values(stats, weights, ["auc", "pr_auc"])
    y = frame["label"].to_numpy()
    for replicate, user_weight in enumerate(weights):
        row_weight = user_weight[rows.user_code]
        drawn = row_weight > 0
        expected_auc = skm.roc_auc_score(y[drawn], scores[drawn], sample_weight=row_weight[drawn])
        expected_ap = skm.average_precision_score(y[drawn], scores[drawn], sample_weight=row_weight[drawn])
        assert fast["auc"][replicate] == pytest.approx(expected_auc, abs=1e-12)
        assert fast["pr_auc"][replicate] == pytest.approx(expected_ap, abs=1e-12)


def test_fractional_weights_empty_replicates_and_rows_without_negatives():
    """Non-integer weights: equal to the dense form to 1e-12; nothing drawn: NaN; no negatives: NaN AUC, AP 1."""
    frame, scores = _tied_rows(seed=7)
    rows = EvalRows.from_frame(frame)
    stats = policy_statistics(rows, scores, k=5)
    weights = np.random.default_rng(4).random((6, rows.n_users))
    weights[0] = 0.0
    fast = metric_values(stats, weights, ["auc", "pr_auc"])
    dense_auc, dense_ap = _dense_auc_ap(stats, weights)
    np.testing.assert_allclose(fast["auc"], dense_auc, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(fast["pr_auc"], dense_ap, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(fast["auc"][0]) and np.isnan(fast["pr_auc"][0])
    positive_frame, positive_scores, _ = ranked_rows(n_users=10, per_user=4, all_positive=True)
    positive_rows = EvalRows.from_frame(positive_frame)
    all_positive = metric_values(
        policy_statistics(positive_rows, positive_scores, k=3), np.ones((3, 10)) * 2.0, ["auc", "pr_auc"]
    )
    assert np.isnan(all_positive["auc"]).all()
    assert np.array_equal(all_positive["pr_auc"], np.ones(3))


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
