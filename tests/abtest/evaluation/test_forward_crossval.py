"""Review fixes in evaluate: forward-in-time CV, coverage intervals, small segments, bound metrics, inputs."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.model_selection import TimeSeriesSplit

from abtest.evaluation.analysis import EvaluationConfig, evaluate_policies, headline_metrics
from abtest.evaluation.bootstrap import BootstrapConfig, MetricComparison, compare_policies, user_weights
from abtest.evaluation.crossval import (
    corrected_paired_t_test,
    cross_validate,
    cv_scheme_for_split,
    forward_folds,
)
from abtest.evaluation.decision import decide
from abtest.evaluation.delong import DelongResult
from abtest.evaluation.inputs import resolve_policy
from abtest.evaluation.metrics import EvalRows, metric_values, point_metrics, policy_statistics
from abtest.evaluation.report import _cross_validation_body, headline_table
from abtest.evaluation.segments import MIN_SEGMENT_USERS, TOO_FEW_USERS_NOTE, Segment, compare_segments
from abtest.tracking.lineage import LineageError
from steps import evaluate
from tests.test_evaluation_parts import _tables

# --- 1. cross-validation forward in time under a temporal split ------------------------------------------------

FITS: list[dict[str, pd.DataFrame]] = []  # what the stub fitter saw, fold by fold (sequential run only)


def _stub_features(splits, users, items, *, seed):
    return SimpleNamespace(splits=splits)


def _stub_fit(policy, train, val, *, params):
    FITS.append({"policy": policy, "train": train, "val": val})
    noise = 0.0 if policy == "B" else 0.3

    def predict(test: pd.DataFrame) -> np.ndarray:
        rng = np.random.default_rng(len(train))
        return np.clip(test["rating"].to_numpy() / 5 + noise * rng.normal(size=len(test)), 0, 1)

    return SimpleNamespace(predict=predict)


def _interactions(n_rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rating = rng.integers(1, 6, n_rows)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(1, 40, n_rows),
            "item_id": rng.integers(1, 50, n_rows),
            "rating": rating,
            "timestamp": rng.integers(0, 300, n_rows),  # many shared timestamps
            "label": (rating >= 4).astype(np.int64),
        }
    )
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # not in time order


def test_forward_folds_train_on_the_past_and_match_time_series_split_without_ties():
    distinct = np.arange(120)
    for (train, test), (ts_train, ts_test) in zip(
        forward_folds(distinct, 5), TimeSeriesSplit(n_splits=5).split(distinct), strict=True
    ):
        np.testing.assert_array_equal(train, ts_train)
        np.testing.assert_array_equal(test, ts_test)
    tied = np.sort(np.random.default_rng(0).integers(0, 30, 200))
    for train, test in forward_folds(tied, 4):
        assert tied[train].max() < tied[test].min()  # a cut never splits one timestamp
    with pytest.raises(ValueError, match="sorted by timestamp"):
        forward_folds(np.array([3, 1, 2, 4, 5, 6]), 2)


def test_temporal_split_cross_validates_forward_with_latest_rows_for_early_stopping():
    assert cv_scheme_for_split("temporal") == "forward"
    assert cv_scheme_for_split("random") == cv_scheme_for_split("autoint") == "random"
    FITS.clear()
    result = cross_validate(
        _interactions(),
        pd.DataFrame(),
        pd.DataFrame(),
        params_a={},
        params_b={},
        n_folds=4,
        seed=0,
        k=5,
        metrics=["auc"],
        build_features=_stub_features,
        fit_policy=_stub_fit,
        scheme="forward",
    )
    assert result.scheme == "forward" and result.description.startswith("forward-in-time")
    assert len(FITS) == 8
    train_sizes = []
    for fit in FITS:
        train, val = fit["train"]["timestamp"], fit["val"]["timestamp"]
        assert train.max() <= val.min()  # the early-stopping slice is the most recent part
        assert len(val) == round(0.1 * (len(train) + len(val)))
        train_sizes.append(len(train) + len(val))
    assert train_sizes[::2] == sorted(train_sizes[::2]) and train_sizes[0] < train_sizes[-1]  # growing past
    # Nadeau-Bengio with the mean n_test / n_train of the unequal folds.
    ordered = _interactions().sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    folds = forward_folds(ordered["timestamp"].to_numpy(), 4)
    ratio = np.mean([len(test) / len(train) for train, test in folds])
    wide = result.folds.pivot_table(index="fold", columns="policy", values="value")
    t, p = corrected_paired_t_test((wide["B"] - wide["A"]).to_numpy(), test_train_ratio=ratio)
    summary = result.summary.iloc[0]
    assert summary["t_corrected"] == pytest.approx(t) and summary["p_value"] == pytest.approx(p)
    assert "Scheme: forward-in-time" in _cross_validation_body(result, {})


def test_forward_folds_in_worker_processes_equal_the_sequential_run():
    kwargs = dict(
        params_a={},
        params_b={},
        n_folds=3,
        seed=0,
        k=5,
        metrics=["auc", "logloss"],
        build_features=_stub_features,
        fit_policy=_stub_fit,
        scheme="forward",
    )
    sequential = cross_validate(_interactions(), pd.DataFrame(), pd.DataFrame(), n_jobs=1, **kwargs)
    parallel = cross_validate(_interactions(), pd.DataFrame(), pd.DataFrame(), n_jobs=2, **kwargs)
    pd.testing.assert_frame_equal(parallel.folds, sequential.folds)
    pd.testing.assert_frame_equal(parallel.summary, sequential.summary)


def test_random_scheme_still_shuffles_and_forward_needs_timestamps():
    FITS.clear()
    kwargs = dict(
        params_a={},
        params_b={},
        n_folds=3,
        seed=0,
        k=5,
        metrics=["auc"],
        build_features=_stub_features,
        fit_policy=_stub_fit,
    )
    result = cross_validate(_interactions(), pd.DataFrame(), pd.DataFrame(), **kwargs)
    assert result.scheme == "random"
    assert any(fit["train"]["timestamp"].max() > fit["val"]["timestamp"].min() for fit in FITS)
    with pytest.raises(ValueError, match="needs a 'timestamp' column"):
        cross_validate(
            _interactions().drop(columns="timestamp"), pd.DataFrame(), pd.DataFrame(), scheme="forward", **kwargs
        )
    with pytest.raises(ValueError, match="scheme must be one of"):
        cross_validate(_interactions(), pd.DataFrame(), pd.DataFrame(), scheme="shuffled", **kwargs)


# --- 2. coverage: no biased percentile intervals ---------------------------------------------------------------


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
    test, train, users, items, tables_a, tables_b = _tables()
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


# --- 3. segments with too few users -----------------------------------------------------------------------------


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


# --- 4. metrics pinned at a bound, and the decision reason when DeLong and the bootstrap disagree --------------


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


# --- 5. parameter checks before the run, and which policy's URI failed -----------------------------------------


def test_negative_cv_folds_is_refused_before_a_run_exists():
    client = MlflowClient()
    experiment = mlflow.tracking.fluent._get_experiment_id()
    before = len(client.search_runs([experiment], max_results=50_000))
    with pytest.raises(ValueError, match=r"cv_folds must be 0 or 1 \(no cross-validation\) or >= 2 folds, got -1"):
        evaluate.main(["--cv_folds", "-1"])
    assert len(client.search_runs([experiment], max_results=50_000)) == before
    assert evaluate.check_cv_folds(0) == 0 and evaluate.check_cv_folds(5) == 5


def test_unknown_model_uri_names_the_policy_and_the_parameter():
    expected = r"policy A: cannot resolve policy_a_uri='models:/nope@PolicyA': .*nope"
    with pytest.raises(LineageError, match=expected):
        resolve_policy("A", model_uri="models:/nope@PolicyA")
    with pytest.raises(LineageError, match=r"policy B: cannot resolve policy_b_uri='file:/x'"):
        resolve_policy("B", model_uri="file:/x")
    client = MlflowClient()
    experiment = mlflow.tracking.fluent._get_experiment_id()
    before = len(client.search_runs([experiment], max_results=50_000))
    with pytest.raises(LineageError, match=expected):
        evaluate.main(["--policy_a_uri", "models:/nope@PolicyA", "--cv_folds", "0"])
    assert len(client.search_runs([experiment], max_results=50_000)) == before  # no failed run left behind
