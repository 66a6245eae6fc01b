"""Cross-validation of both policies: the folds give the same numbers sequentially and in worker processes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from abtest.evaluation.crossval import cross_validate
from abtest.evaluation.metrics import all_metrics
from abtest.features import build
from abtest.policies import models
from steps.cli import parameter_defaults
from steps.evaluate import cross_validation_jobs


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


def test_cv_jobs_zero_means_one_per_available_core_and_negative_is_refused() -> None:
    assert cross_validation_jobs(0) == len(os.sched_getaffinity(0))
    assert cross_validation_jobs(3) == 3
    with pytest.raises(ValueError, match=r"cv_jobs must be >= 0 \(0 = one per available core\), got -1"):
        cross_validation_jobs(-1)
