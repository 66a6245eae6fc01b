"""Cross-validation of both policies (abtest.evaluation.crossval): random and forward folds, workers, t-test."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.model_selection import TimeSeriesSplit

from abtest.evaluation.crossval import (
    corrected_paired_t_test,
    cross_validate,
    cv_scheme_for_split,
    forward_folds,
    start_cross_validate,
    summarise_folds,
)
from abtest.evaluation.metrics import all_metrics
from abtest.evaluation.report import _cross_validation_body
from abtest.features import build
from abtest.policies import models
from steps.cli import parameter_defaults

FITS: list[dict[str, pd.DataFrame]] = []  # what the stub fitter saw, fold by fold (sequential run only)


def _cross_validate(synthetic_movielens, n_jobs: int):
    splits, users, items = synthetic_movielens
    data = pd.concat([splits["train"], splits["val"]], ignore_index=True)
    params_b = {**parameter_defaults("train_b"), "seed": "3", "n_estimators": "40", "early_stopping_rounds": "10"}
    return cross_validate(
        data,
        users,
        items,
        params_a={**parameter_defaults("train_a"), "seed": "3"},
        params_b=params_b,
        n_folds=3,
        seed=3,
        k=5,
        metrics=all_metrics(5),
        build_features=build.build_features,
        fit_policy=models.fit_policy,
        n_jobs=n_jobs,
    )


def test_worker_processes_reproduce_the_sequential_folds(synthetic_movielens) -> None:
    sequential = _cross_validate(synthetic_movielens, n_jobs=1)
    parallel = _cross_validate(synthetic_movielens, n_jobs=2)
    pd.testing.assert_frame_equal(parallel.folds, sequential.folds)
    pd.testing.assert_frame_equal(parallel.summary, sequential.summary)
    folds = sequential.folds
    assert sorted(folds["fold"].unique()) == [0, 1, 2] and set(folds["policy"]) == {"A", "B"}
    auc = folds[folds["metric"] == "auc"]["value"].to_numpy()
    assert np.all((auc > 0.55) & (auc < 1.0))  # the synthetic data has learnable signal, and no leak


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


def _failing_fit(policy, train, val, *, params):
    if len(train) > 300:  # the largest forward folds: sent to the workers first
        raise ValueError(f"fit refused on purpose ({len(train)} rows)")
    return _stub_fit(policy, train, val, params=params)


def test_started_folds_give_the_same_result_and_a_worker_error_surfaces():
    """start_cross_validate returns at once; .result() in its block = cross_validate's; a fold's error raises."""
    kwargs = dict(
        params_a={},
        params_b={},
        n_folds=4,
        seed=0,
        k=5,
        metrics=["auc", "brier"],
        build_features=_stub_features,
        scheme="forward",
    )
    sequential = cross_validate(_interactions(), pd.DataFrame(), pd.DataFrame(), fit_policy=_stub_fit, **kwargs)
    with start_cross_validate(
        _interactions(), pd.DataFrame(), pd.DataFrame(), fit_policy=_stub_fit, n_jobs=2, **kwargs
    ) as pending:
        started = pending.result()
        assert pending.result() is started  # waited once
    pd.testing.assert_frame_equal(started.folds, sequential.folds)
    pd.testing.assert_frame_equal(started.summary, sequential.summary)
    assert started.folds["fold"].tolist() == sorted(started.folds["fold"])  # fold order, whatever ran first
    with (
        pytest.raises(ValueError, match="fit refused on purpose"),
        start_cross_validate(
            _interactions(), pd.DataFrame(), pd.DataFrame(), fit_policy=_failing_fit, n_jobs=2, **kwargs
        ) as pending,
    ):
        pending.result()


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


def test_corrected_t_test_is_wider_than_the_paired_t_test():
    differences = np.array([0.010, 0.013, 0.008, 0.011, 0.012])
    t_plain, p_plain = stats.ttest_1samp(differences, 0.0)
    t, p = corrected_paired_t_test(differences, test_train_ratio=1 / 4)
    # Nadeau-Bengio: variance x (1/K + n2/n1) / (1/K) = (0.2 + 0.25) / 0.2 = 2.25 -> t shrinks by 1.5.
    assert t == pytest.approx(t_plain / 1.5)
    assert p > p_plain
    assert corrected_paired_t_test(np.zeros(3), test_train_ratio=0.5) == (0.0, 1.0)


def test_summarise_folds_pairs_by_fold():
    per_fold = pd.DataFrame(
        {
            "fold": [0, 0, 1, 1, 2, 2],
            "policy": ["A", "B"] * 3,
            "metric": "auc",
            "value": [0.70, 0.72, 0.71, 0.74, 0.69, 0.70],
        }
    )
    summary = summarise_folds(per_fold, ["auc"], test_train_ratio=0.5).iloc[0]
    assert summary["diff_mean"] == pytest.approx(0.02)
    assert summary["b_better_folds"] == 3
    assert summary["a_mean"] == pytest.approx(0.70)
