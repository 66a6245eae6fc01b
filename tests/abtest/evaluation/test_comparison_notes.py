"""What the policy comparison says where an interval would mislead: coverage, small segments, metrics at a
bound, and DeLong against the clustered bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abtest.evaluation.analysis import EvaluationConfig, evaluate_policies, headline_metrics
from abtest.evaluation.bootstrap import BootstrapConfig, MetricComparison, compare_policies, user_weights
from abtest.evaluation.decision import decide
from abtest.evaluation.delong import DelongResult
from abtest.evaluation.metrics import EvalRows, metric_values, point_metrics, policy_statistics
from abtest.evaluation.report import headline_table
from abtest.evaluation.segments import MIN_SEGMENT_USERS, TOO_FEW_USERS_NOTE, Segment, compare_segments
from tests.fixtures.frames import tables

# --- 1. coverage: no biased percentile intervals ---------------------------------------------------------------


def _ranked_rows(n_users: int = 60, per_user: int = 12, n_items: int = 200, seed: int = 0, all_positive=False):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    signal = rng.normal(size=len(users))
    label = np.ones(len(users), dtype=int) if all_positive else (signal + rng.normal(size=len(users)) > 0) * 1
    frame = pd.DataFrame({"user_id": users, "item_id": items, "label": label})
    score_a = 1 / (1 + np.exp(-(signal + rng.normal(scale=2.0, size=len(users)))))
    score_b = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.7, size=len(users)))))
    return frame, score_a, score_b


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


# --- 2. segments with too few users -----------------------------------------------------------------------------


def test_segments_below_the_user_minimum_report_point_values_only():
    frame, score_a, score_b = _ranked_rows(n_users=60, per_user=20)
    rows = EvalRows.from_frame(frame)
    few = frame["user_id"].isin([0, 1, 2]).to_numpy()
    many = frame["user_id"] < MIN_SEGMENT_USERS + 5
    segments = [Segment("user history", "10-29", few), Segment("gender", "M", many.to_numpy())]
    table = compare_segments(
        rows, score_a, score_b, segments, config=BootstrapConfig(n_bootstrap=200, alpha=0.05, seed=42), k=10
    )
    small = table[table["segment"] == "10-29"].set_index("metric")
    auc_a = point_metrics(policy_statistics(rows.subset(few), score_a[few], k=10), ["auc"])["auc"]
    assert small.loc["auc", "n_users"] == 3 and small.loc["auc", "a"] == pytest.approx(auc_a)
    assert small.loc["auc", "diff"] == pytest.approx(small.loc["auc", "b"] - small.loc["auc", "a"])
    assert small[["a_low", "a_high", "diff_low", "diff_high", "p_value"]].isna().all().all()
    assert (small["note"] == TOO_FEW_USERS_NOTE).all() and "too few users" in TOO_FEW_USERS_NOTE
    large = table[table["segment"] == "M"].set_index("metric")
    assert large[["diff_low", "diff_high", "p_value"]].notna().all().all() and (large["note"] == "").all()


# --- 3. metrics pinned at a bound, and the decision reason when DeLong and the bootstrap disagree --------------


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
