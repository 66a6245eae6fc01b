"""DeLong, the weighted metrics and the paired user-clustered bootstrap, on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from abtest.evaluation.bootstrap import BootstrapConfig, bootstrap_p_value, compare_policies, comparison_frame
from abtest.evaluation.decision import decide
from abtest.evaluation.delong import delong_test, placement_values
from abtest.evaluation.metrics import EvalRows, all_metrics, metric_values, point_metrics, policy_statistics


def _brute_force_delong(labels, scores_a, scores_b):
    """DeLong et al. (1988) by definition: psi over every positive/negative pair, O(m·n)."""
    pos, neg = labels == 1, labels == 0
    components = []
    for scores in (scores_a, scores_b):
        x, y = scores[pos][:, None], scores[neg][None, :]
        psi = (x > y) + 0.5 * (x == y)
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([components[0][0], components[1][0]]))
    s01 = np.cov(np.vstack([components[0][1], components[1][1]]))
    m, n = pos.sum(), neg.sum()
    var = s10[0, 0] / m + s01[0, 0] / n + s10[1, 1] / m + s01[1, 1] / n - 2 * (s10[0, 1] / m + s01[0, 1] / n)
    diff = components[1][0].mean() - components[0][0].mean()
    return diff, np.sqrt(var)


def test_delong_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores_a = np.round(rng.random(60) + 0.3 * labels, 1)  # rounded: many ties
    scores_b = np.round(rng.random(60) + 0.6 * labels, 1)
    result = delong_test(labels, scores_a, scores_b, alpha=0.05)
    diff, std_error = _brute_force_delong(labels, scores_a, scores_b)
    assert result.difference == pytest.approx(diff, abs=1e-12)
    assert result.std_error == pytest.approx(std_error, rel=1e-10)
    assert result.auc_a == pytest.approx(skm.roc_auc_score(labels, scores_a), abs=1e-12)
    assert result.auc_b == pytest.approx(skm.roc_auc_score(labels, scores_b), abs=1e-12)


def test_delong_hand_computed_example():
    # 2 positives, 2 negatives. A: one discordant pair of four -> AUC 0.75; B: perfect -> AUC 1.
    labels = np.array([1, 1, 0, 0])
    scores_a = np.array([0.9, 0.4, 0.5, 0.1])
    scores_b = np.array([0.9, 0.8, 0.5, 0.1])
    v10, v01 = placement_values(labels, scores_a)
    np.testing.assert_allclose(v10, [1.0, 0.5])
    np.testing.assert_allclose(v01, [0.5, 1.0])
    result = delong_test(labels, scores_a, scores_b, alpha=0.05)
    # S10 of A = var([1, .5]) = 0.125, S01 of A = 0.125, B's components are constant -> var = 0.125/2 * 2.
    assert result.std_error == pytest.approx(np.sqrt(0.125), rel=1e-12)
    assert result.z == pytest.approx(0.25 / np.sqrt(0.125), rel=1e-12)


def test_delong_identical_scores_give_p_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50)
    result = delong_test(labels, scores, scores, alpha=0.05)
    assert result.difference == 0 and result.p_value == 1.0


def test_delong_rejects_bad_input():
    with pytest.raises(ValueError, match="0/1"):
        delong_test(np.array([0, 2, 1, 0]), np.zeros(4), np.zeros(4), alpha=0.05)
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test(np.array([1, 0, 0, 0]), np.zeros(4), np.zeros(4), alpha=0.05)


def _synthetic(n_users=200, items=300, per_user=20, seed=0, b_noise=0.6, a_noise=1.5):
    """Test rows with a per-user effect; B's scores are less noisy than A's by construction."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    item = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(n_users)])
    signal = rng.normal(size=len(users)) + rng.normal(size=n_users)[users]
    label = (signal + rng.normal(size=len(users)) > 0).astype(np.int64)
    frame = pd.DataFrame({"user_id": users + 1, "item_id": item + 1, "label": label})

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    score_a = sigmoid(signal + rng.normal(scale=a_noise, size=len(users)))
    score_b = sigmoid(signal + rng.normal(scale=b_noise, size=len(users)))
    return frame, score_a, score_b


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


def test_planted_difference_b_wins_and_interval_excludes_zero():
    frame, score_a, score_b = _synthetic()
    rows = EvalRows.from_frame(frame)
    config = BootstrapConfig(n_bootstrap=300, alpha=0.05, seed=1)
    table = compare_policies(
        policy_statistics(rows, score_a, k=10),
        policy_statistics(rows, score_b, k=10),
        rows.n_users,
        all_metrics(10),
        config,
    )
    by_metric = {row.metric: row for row in table}
    assert by_metric["auc"].diff_low > 0 and by_metric["auc"].b_better
    assert by_metric["logloss"].diff_high < 0 and by_metric["logloss"].b_better
    assert by_metric["auc"].a_low <= by_metric["auc"].a <= by_metric["auc"].a_high
    assert by_metric["auc"].p_value < 0.01
    decision = decide(by_metric["auc"], delong_test(rows.label, score_a, score_b, alpha=0.05), alpha=0.05)
    assert decision.winner == "B" and decision.label == "B wins"
    assert "B wins" in decision.reason
    # Swapping the roles makes A the winner.
    swapped = compare_policies(
        policy_statistics(rows, score_b, k=10),
        policy_statistics(rows, score_a, k=10),
        rows.n_users,
        ["auc"],
        config,
    )
    assert decide(swapped[0], delong_test(rows.label, score_b, score_a, alpha=0.05), alpha=0.05).winner == "A"


def test_identical_policies_no_difference_and_intervals_cover_zero():
    frame, score_a, _ = _synthetic()
    rows = EvalRows.from_frame(frame)
    stats = policy_statistics(rows, score_a, k=10)
    table = compare_policies(
        stats, stats, rows.n_users, all_metrics(10), BootstrapConfig(n_bootstrap=200, alpha=0.05, seed=42)
    )
    for row in table:
        if row.metric == "coverage_at_10":  # a set size: point values only, no interval or p
            assert row.diff == 0 and np.isnan([row.diff_low, row.diff_high, row.p_value]).all()
            continue
        assert row.diff == 0 and row.diff_low <= 0 <= row.diff_high and row.p_value == 1.0
    decision = decide(table[0], delong_test(rows.label, score_a, score_a, alpha=0.05), alpha=0.05)
    assert decision.winner == "none" and decision.label == "no significant difference"


def test_clustered_interval_is_wider_than_row_resampling_when_users_differ():
    # A strong per-user effect: the honest (user-clustered) interval must be wider than DeLong's row-level one.
    rng = np.random.default_rng(5)
    n_users, per_user = 150, 30
    users = np.repeat(np.arange(n_users), per_user)
    user_effect = rng.normal(scale=2.0, size=n_users)[users]
    label = (user_effect + rng.normal(size=len(users)) > 0).astype(int)
    score_a = 1 / (1 + np.exp(-(user_effect + rng.normal(scale=2, size=len(users)))))
    score_b = 1 / (1 + np.exp(-(user_effect + rng.normal(scale=2, size=len(users)))))
    frame = pd.DataFrame({"user_id": users, "item_id": np.tile(np.arange(per_user), n_users), "label": label})
    rows = EvalRows.from_frame(frame)
    table = compare_policies(
        policy_statistics(rows, score_a, k=10),
        policy_statistics(rows, score_b, k=10),
        n_users,
        ["auc"],
        BootstrapConfig(n_bootstrap=1000, alpha=0.05, seed=42),
    )
    delong = delong_test(label, score_a, score_b, alpha=0.05)
    assert table[0].diff_high - table[0].diff_low > 0.9 * (delong.ci_high - delong.ci_low)
    assert comparison_frame(table).loc[0, "metric"] == "auc"


def test_bootstrap_of_1000_replicates_on_20k_rows_is_fast():
    import time

    frame, score_a, score_b = _synthetic(n_users=1000, items=1600, per_user=20)
    rows = EvalRows.from_frame(frame)
    start = time.perf_counter()
    compare_policies(
        policy_statistics(rows, score_a, k=10),
        policy_statistics(rows, score_b, k=10),
        rows.n_users,
        all_metrics(10),
        BootstrapConfig(n_bootstrap=1000, alpha=0.05, seed=42),
    )
    assert time.perf_counter() - start < 20  # about 1-2 s on 2 cores; generous for a loaded CI box


def test_bootstrap_p_value_tails():
    assert bootstrap_p_value(np.zeros(10)) == 1.0
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.array([-1.0, 1.0])) == 1.0


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
