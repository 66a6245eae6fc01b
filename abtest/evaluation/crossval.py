"""Cross-validation of both policies, retrained with their logged parameters.

The held-out test split is left alone: the folds cut the training and validation rows. Two schemes:

- ``random`` (prepare's random and autoint splits): shuffled K-fold over the rows. It measures how well each
  policy predicts rows drawn from the same period it was trained on, like the random test split.
- ``forward`` (prepare's temporal split): rows ordered by time and cut into K + 1 consecutive blocks; fold f
  trains on blocks 0..f (the past) and is scored on block f + 1 (the next period), as sklearn's
  ``TimeSeriesSplit`` does, with each cut moved past rows sharing its timestamp so no fold trains on the time it
  is scored on. It measures what the temporal test split measures: predicting the future from the past. A
  shuffled K-fold there would score each policy on rows interleaved in time with its training rows, a much
  easier task than the test split (on ML-100K, CV AUC about 0.80 against a test AUC about 0.71).

For each fold, the history features are rebuilt from that fold's training part only
(``abtest.features.build.build_features``), a slice of the training part is kept aside for policy B's early
stopping (as ``train_b`` uses the validation split; under ``forward`` the slice is the most recent rows of the
training part, so early stopping also looks forward in time), both policies are refit through
``abtest.policies.models.fit_policy`` and scored on the held-out fold. The paired per-fold differences are tested
with the Nadeau-Bengio corrected resampled t-test, because fold results share training rows and the plain paired
t-test is too confident.

Folds are independent given the seed, so ``n_jobs > 1`` fits them in that many fresh (spawned) processes, each
held to one BLAS/OpenMP thread: on the 2-core machines this project targets the cross-validation is most of the
evaluate step, and the results are identical to a sequential run.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.model_selection import KFold, TimeSeriesSplit, train_test_split
from threadpoolctl import threadpool_limits

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from ab_router.schema import FEATURE_COLUMNS, ITEM_ID, TIMESTAMP, USER_ID
from abtest.evaluation.inputs import PolicySource
from abtest.evaluation.metrics import EvalRows, all_metrics, higher_is_better, point_metrics, policy_statistics
from abtest.features import build as features
from abtest.policies import models as policies

log = logging.getLogger(__name__)

# Share of a fold's training part kept aside for policy B's early stopping.
EARLY_STOPPING_SHARE = 0.1

CvScheme = Literal["random", "forward"]
CV_SCHEMES: tuple[str, ...] = ("random", "forward")
# What each scheme estimates, for the report and the run's tags.
CV_SCHEME_DESCRIPTIONS: dict[str, str] = {
    "random": "random K-fold: rows shuffled into K folds; measures prediction of rows from the training period",
    "forward": "forward-in-time: K folds each trained on all earlier rows and scored on the next block in time; "
    "measures prediction of the next period from the past, as the temporal test split does",
}

FeatureBuilder = Callable[..., Any]  # abtest.features.build.build_features
PolicyFitter = Callable[..., Any]  # abtest.policies.models.fit_policy


@dataclass(frozen=True)
class CrossValidationResult:
    """Per-fold metrics (long: fold, policy, metric, value), the paired summary per metric and the scheme."""

    folds: pd.DataFrame
    summary: pd.DataFrame
    scheme: CvScheme = "random"

    @property
    def description(self) -> str:
        """What the scheme's folds measure, in one sentence."""
        return CV_SCHEME_DESCRIPTIONS[self.scheme]


def cv_scheme_for_split(split: str) -> CvScheme:
    """The cross-validation scheme matching prepare's ``split`` mode: forward in time for ``temporal``."""
    return "forward" if split == "temporal" else "random"


def forward_folds(timestamps: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, test positions) of ``n_folds`` forward-in-time folds over rows sorted by time.

    The blocks are ``TimeSeriesSplit(n_folds)``'s; each cut is then moved past every row sharing the timestamp
    of the last row before it (as prepare's temporal split does), so every test row is later than every training
    row of its fold.
    """
    timestamps = np.asarray(timestamps)
    if np.any(np.diff(timestamps) < 0):
        raise ValueError("forward-in-time folds need rows sorted by timestamp")
    n_rows = len(timestamps)
    starts = [int(test[0]) for _, test in TimeSeriesSplit(n_splits=n_folds).split(timestamps)]
    cuts = [int(np.searchsorted(timestamps, timestamps[c - 1], side="right")) for c in starts] + [n_rows]
    folds = []
    for fold, (start, end) in enumerate(itertools.pairwise(cuts)):
        if end <= start:
            raise ValueError(
                f"forward-in-time fold {fold} has no rows after moving its cut past shared timestamps "
                f"({n_rows} rows, {n_folds} folds); use fewer folds"
            )
        folds.append((np.arange(start), np.arange(start, end)))
    return folds


def corrected_paired_t_test(differences: np.ndarray, *, test_train_ratio: float) -> tuple[float, float]:
    """Nadeau & Bengio (2003): t and two-sided p of the mean per-fold difference, variance inflated by n2/n1.

    The plain paired t-test treats the K fold results as independent; they are not (the training parts overlap),
    so the variance is multiplied by (1/K + n_test/n_train) instead of 1/K. The correction assumes folds of one
    size; with unequal folds (forward-in-time folds train on growing parts) pass the mean of the per-fold
    n_test/n_train ratios, an approximation.
    """
    differences = np.asarray(differences, dtype=float)
    k = len(differences)
    if k < 2:
        return float("nan"), float("nan")
    variance = differences.var(ddof=1)
    if variance == 0:
        return (0.0, 1.0) if differences.mean() == 0 else (float(np.sign(differences.mean()) * np.inf), 0.0)
    t = differences.mean() / np.sqrt((1.0 / k + test_train_ratio) * variance)
    return float(t), float(2.0 * stats.t.sf(abs(t), df=k - 1))


@dataclass(frozen=True)
class _Fold:
    """Everything one fold needs, picklable so a worker process can run it."""

    fold: int
    fit_part: pd.DataFrame
    held_out: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    params: Mapping[str, Mapping[str, Any]]  # policy -> its training run's parameters
    seed: int
    k: int
    metrics: tuple[str, ...]
    build_features: FeatureBuilder
    fit_policy: PolicyFitter
    single_thread: bool
    scheme: CvScheme = "random"


def _early_stopping_split(task: _Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fold's training part minus the early-stopping slice, and that slice (the latest rows if forward)."""
    if task.scheme == "forward":
        n_slice = max(1, round(EARLY_STOPPING_SHARE * len(task.fit_part)))
        return task.fit_part.iloc[:-n_slice], task.fit_part.iloc[-n_slice:]
    return train_test_split(
        task.fit_part, test_size=EARLY_STOPPING_SHARE, random_state=task.seed + task.fold, shuffle=True
    )


def _run_fold(task: _Fold) -> list[dict[str, Any]]:
    """Rebuild the features from the fold's training part, refit both policies, score the held-out rows."""
    limits = threadpool_limits(limits=1) if task.single_thread else None
    try:
        inner_train, inner_val = _early_stopping_split(task)
        tables = task.build_features(
            {
                "train": inner_train.reset_index(drop=True),
                "val": inner_val.reset_index(drop=True),
                "test": task.held_out,
            },
            task.users,
            task.items,
            seed=task.seed,
        )
        train, val, test = (tables.splits[s] for s in ("train", "val", "test"))
        rows = EvalRows.from_frame(test)
        records = []
        for policy in EXPERIMENT_ARMS:
            fitted = task.fit_policy(policy, train, val, params=task.params[policy])
            values = point_metrics(policy_statistics(rows, fitted.predict(test), k=task.k), task.metrics)
            records += [{"fold": task.fold, "policy": policy, "metric": m, "value": v} for m, v in values.items()]
        return records
    finally:
        if limits is not None:
            limits.restore_original_limits()


def cross_validate(
    data: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    params_a: Mapping[str, Any],
    params_b: Mapping[str, Any],
    n_folds: int,
    seed: int,
    k: int,
    metrics: Sequence[str],
    build_features: FeatureBuilder,
    fit_policy: PolicyFitter,
    n_jobs: int = 1,
    scheme: CvScheme = "random",
) -> CrossValidationResult:
    """Refit A and B on ``n_folds`` folds of ``data`` (interaction columns + label) and score each held-out fold.

    ``scheme``: ``"random"`` (shuffled K-fold) or ``"forward"`` (forward in time by ``timestamp``; see the module
    docstring).

    ``build_features`` and ``fit_policy`` are passed in (the real ones are ``abtest.features.build.build_features``
    and ``abtest.policies.models.fit_policy``) so this module stays importable and testable on its own; with
    ``n_jobs > 1`` they must be picklable (module-level functions).
    """
    if n_folds < 2:
        raise ValueError(f"cross-validation needs n_folds >= 2, got {n_folds} (0 or 1 disables it upstream)")
    if len(data) < 10 * n_folds:
        raise ValueError(
            f"cross-validation needs at least {10 * n_folds} rows for {n_folds} folds, got {len(data)}"
        )
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    if scheme not in CV_SCHEMES:
        raise ValueError(f"scheme must be one of {list(CV_SCHEMES)}, got {scheme!r}")
    raw = data.drop(columns=[c for c in FEATURE_COLUMNS if c in data.columns]).reset_index(drop=True)
    if scheme == "forward":
        if TIMESTAMP not in raw.columns:
            raise ValueError(f"forward-in-time cross-validation needs a {TIMESTAMP!r} column; got {list(raw)}")
        raw = raw.sort_values([TIMESTAMP, USER_ID, ITEM_ID], kind="stable").reset_index(drop=True)
        splits = forward_folds(raw[TIMESTAMP].to_numpy(), n_folds)
    else:
        splits = list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(raw))
    workers = min(n_jobs, n_folds)
    tasks = [
        _Fold(
            fold=fold,
            fit_part=raw.iloc[fit_rows],
            held_out=raw.iloc[held_rows].reset_index(drop=True),
            users=users,
            items=items,
            params={CONTROL: dict(params_a), TREATMENT: dict(params_b)},
            seed=seed,
            k=k,
            metrics=tuple(metrics),
            build_features=build_features,
            fit_policy=fit_policy,
            single_thread=workers > 1,
            scheme=scheme,
        )
        for fold, (fit_rows, held_rows) in enumerate(splits)
    ]
    records = []
    if workers == 1:
        results = map(_run_fold, tasks)
        executor = None
    else:
        # Spawned, not forked: the parent holds MLflow's and OpenMP's threads, which a fork would copy mid-state.
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        results = executor.map(_run_fold, tasks)
    try:
        for task, fold_records in zip(tasks, results, strict=True):
            records += fold_records
            log.info(
                "cross-validation fold %d/%d done (%d held-out rows)", task.fold + 1, n_folds, len(task.held_out)
            )
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    per_fold = pd.DataFrame.from_records(records)
    # Mean over folds of n_test / n_train (1 / (K - 1) for equal random folds; unequal when forward in time).
    ratio = float(np.mean([len(held) / len(fit) for fit, held in splits]))
    return CrossValidationResult(
        folds=per_fold, summary=summarise_folds(per_fold, metrics, test_train_ratio=ratio), scheme=scheme
    )


def summarise_folds(per_fold: pd.DataFrame, metrics: Sequence[str], *, test_train_ratio: float) -> pd.DataFrame:
    """Mean ± std of A, B and the paired difference B − A per metric, with the corrected t-test."""
    wide = per_fold.pivot_table(index=["metric", "fold"], columns="policy", values="value")
    rows = []
    for metric in metrics:
        folds = wide.loc[metric]
        difference = (folds[TREATMENT] - folds[CONTROL]).to_numpy()
        t, p = corrected_paired_t_test(difference, test_train_ratio=test_train_ratio)
        rows.append(
            {
                "metric": metric,
                "n_folds": len(folds),
                "a_mean": folds[CONTROL].mean(),
                "a_std": folds[CONTROL].std(ddof=1),
                "b_mean": folds[TREATMENT].mean(),
                "b_std": folds[TREATMENT].std(ddof=1),
                "diff_mean": difference.mean(),
                "diff_std": difference.std(ddof=1),
                "b_better_folds": int(np.sum(difference > 0 if higher_is_better(metric) else difference < 0)),
                "t_corrected": t,
                "p_value": p,
            }
        )
    return pd.DataFrame(rows)


def run_cross_validation(
    prepared_train: pd.DataFrame,
    prepared_val: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    sources: dict[str, PolicySource],
    *,
    cv_folds: int,
    seed: int,
    k: int,
    cv_jobs: int,
    scheme: CvScheme,
) -> CrossValidationResult | None:
    """K-fold refits of both policies on train ∪ val with their training runs' parameters (None if disabled).

    ``scheme``: ``"forward"`` (in time; for a temporal split) or ``"random"`` (shuffled K-fold).
    """
    if cv_folds <= 1:
        log.info("cross-validation disabled (cv_folds=%d)", cv_folds)
        return None
    return cross_validate(
        pd.concat([prepared_train, prepared_val], ignore_index=True),
        users,
        items,
        params_a=sources[CONTROL].params,
        params_b=sources[TREATMENT].params,
        n_folds=cv_folds,
        seed=seed,
        k=k,
        metrics=all_metrics(k),
        build_features=features.build_features,
        fit_policy=policies.fit_policy,
        n_jobs=cv_jobs,
        scheme=scheme,
    )
