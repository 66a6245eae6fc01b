"""The paired user-clustered bootstrap of abtest.evaluation.bootstrap: intervals, p-values, coverage, bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abtest.evaluation.analysis import EvaluationConfig, evaluate_policies, headline_metrics
from abtest.evaluation.bootstrap import (
    BootstrapConfig,
    bootstrap_p_value,
    compare_policies,
    comparison_frame,
    user_weights,
)
from abtest.evaluation.decision import decide
from abtest.evaluation.delong import delong_test
from abtest.evaluation.metrics import EvalRows, all_metrics, metric_values, point_metrics, policy_statistics
from abtest.evaluation.report import headline_table
from tests.fixtures.frames import ranked_rows as _ranked_rows
from tests.fixtures.frames import tables
from tests.fixtures.frames import user_effect_rows as _synthetic


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


def test_coverage_gets_point_values_but_no_interval_because_resampling_biases_it_low():
    frame, score_a, score_b = _ranked_rows()
    rows = EvalRows.from_frame(frame)
    stats_a, stats_b = policy_statistics(rows, score_a, k=5), policy_statistics(rows, score_b, k=5)
    # Why: every replicate covers fewer distinct items than the point estimate (about 63% of users are drawn).
    replicates = metric_values(
        stats_a, user_weights(rows.n_users, 200, np.random.default_rng(0)), ["coverage_at_5"]
    )
    assert replicates["coverage_at_5"].max() < point_metrics(stats_a, ["coverage_at_5"])["coverage_at_5"]
    table = {
        row.metric: row
        for row in compare_policies(
            stats_a, stats_b, rows.n_users, ["auc", "coverage_at_5"], BootstrapConfig(200, alpha=0.05, seed=42)
        )
    }
    coverage = table["coverage_at_5"]
    assert coverage.a == pytest.approx(point_metrics(stats_a, ["coverage_at_5"])["coverage_at_5"])
    assert np.isnan([coverage.a_low, coverage.b_high, coverage.diff_low, coverage.p_value]).all()
    assert table["auc"].a_low <= table["auc"].a <= table["auc"].a_high
    test, train, users, items, tables_a, tables_b = tables()
    result = evaluate_policies(
        test,
        tables_a,
        tables_b,
        train=train,
        users=users,
        items=items,
        config=EvaluationConfig(n_bootstrap=100, alpha=0.05, k=10, seed=42),
        with_figures=False,
    )
    metrics = headline_metrics(result)
    assert "a.coverage_at_10" in metrics and "diff.coverage_at_10" in metrics
    for policy in ("a", "b", "diff"):
        assert not [name for name in metrics if name.startswith(f"{policy}.coverage_at_10.")]
    assert "a.auc.ci_low" in metrics
    note = headline_table(result.comparison, 0.05).set_index("metric").loc["coverage_at_10", "note"]
    assert "no interval" in note


def test_metric_at_its_bound_for_both_policies_is_marked_uninformative():
    frame, score_a, score_b = _ranked_rows(n_users=40, per_user=15, all_positive=False)
    frame.loc[frame.groupby("user_id").cumcount() < 12, "label"] = 1  # 12 of 15 positive: any top 10 hits
    rows = EvalRows.from_frame(frame)
    table = compare_policies(
        policy_statistics(rows, score_a, k=10),
        policy_statistics(rows, score_b, k=10),
        rows.n_users,
        ["auc", "hitrate_at_10"],
        BootstrapConfig(n_bootstrap=200, alpha=0.05, seed=42),
    )
    by_metric = {row.metric: row for row in table}
    assert by_metric["hitrate_at_10"].a == by_metric["hitrate_at_10"].b == 1.0
    assert by_metric["hitrate_at_10"].uninformative and not by_metric["auc"].uninformative
    notes = headline_table(pd.DataFrame([row.__dict__ for row in table]), 0.05).set_index("metric")["note"]
    assert notes["hitrate_at_10"].startswith("uninformative here: both policies at 1") and notes["auc"] == ""
