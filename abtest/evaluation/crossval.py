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
evaluate step, and the results are identical to a sequential run. The largest folds are sent first (forward folds
grow with time, so in fold order the last and largest would run alone at the end), and
:func:`start_cross_validation` returns while the workers run, so the caller can evaluate the test split meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.model_selection import KFold, TimeSeriesSplit, train_test_split
from threadpoolctl import threadpool_limits

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from ab_router.schema import FEATURE_COLUMNS, ITEM_ID, TIMESTAMP, USER_ID
from abtest.evaluation.metrics import EvalRows, all_metrics, higher_is_better, point_metrics, policy_statistics
from abtest.features import build as features
from abtest.policies import models as policies

if TYPE_CHECKING:  # the spawned fold workers import this module; inputs would pull in MLflow for a type
    from abtest.evaluation.inputs import PolicySource

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


class PendingCrossValidation:
    """Folds being fitted (in worker processes when ``n_jobs > 1``); :meth:`result` waits for them.

    A context manager: leaving it stops the workers, cancelling folds not yet started if the block failed.
    """

    def __init__(
        self,
        tasks: Sequence[_Fold],
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        metrics: Sequence[str],
        *,
        workers: int,
    ) -> None:
        self._tasks = list(tasks)
        self._metrics = tuple(metrics)
        # Mean over folds of n_test / n_train (1 / (K - 1) for equal random folds; unequal when forward in time).
        self._ratio = float(np.mean([len(held) / len(fit) for fit, held in splits]))
        self._executor: ProcessPoolExecutor | None = None
        self._futures: dict[int, Future] = {}
        self._result: CrossValidationResult | None = None
        if workers > 1:
            # Spawned, not forked: the parent holds MLflow's and OpenMP's threads, which a fork would copy
            # mid-state.
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
            # Largest training part first (longest-processing-time order): the workers finish close together.
            for task in sorted(self._tasks, key=lambda t: (-len(t.fit_part), t.fold)):
                self._futures[task.fold] = self._executor.submit(_run_fold, task)

    def __enter__(self) -> PendingCrossValidation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close(cancel=exc is not None)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers (``cancel``: drop the folds not started yet)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def result(self) -> CrossValidationResult:
        """Per-fold metrics and their summary, once every fold is done (fold order, whatever order they ran in)."""
        if self._result is not None:
            return self._result
        n_folds = len(self._tasks)
        by_fold: dict[int, list[dict[str, Any]]] = {}
        if self._futures:
            fold_of = {future: fold for fold, future in self._futures.items()}
            finished = ((fold_of[future], future.result()) for future in as_completed(fold_of))
        else:
            finished = ((task.fold, _run_fold(task)) for task in self._tasks)
        for fold, fold_records in finished:
            by_fold[fold] = fold_records
            held_out = len(self._tasks[fold].held_out)
            log.info("cross-validation fold %d/%d done (%d held-out rows)", fold + 1, n_folds, held_out)
        self.close()
        records = [record for task in self._tasks for record in by_fold[task.fold]]
        per_fold = pd.DataFrame.from_records(records)
        self._result = CrossValidationResult(
            folds=per_fold,
            summary=summarise_folds(per_fold, self._metrics, test_train_ratio=self._ratio),
            scheme=self._tasks[0].scheme,
        )
        return self._result


def start_cross_validate(
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
) -> PendingCrossValidation:
    """:func:`cross_validate`, returning as soon as the folds are handed to the workers (see its docstring)."""
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
    return PendingCrossValidation(tasks, splits, metrics, workers=workers)


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
    with start_cross_validate(
        data,
        users,
        items,
        params_a=params_a,
        params_b=params_b,
        n_folds=n_folds,
        seed=seed,
        k=k,
        metrics=metrics,
        build_features=build_features,
        fit_policy=fit_policy,
        n_jobs=n_jobs,
        scheme=scheme,
    ) as pending:
        return pending.result()


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


def start_cross_validation(
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
) -> PendingCrossValidation | None:
    """K-fold refits of both policies on train ∪ val with their training runs' parameters, started (None if
    disabled); the caller waits with ``.result()`` inside ``with``.

    ``scheme``: ``"forward"`` (in time; for a temporal split) or ``"random"`` (shuffled K-fold).
    """
    if cv_folds <= 1:
        log.info("cross-validation disabled (cv_folds=%d)", cv_folds)
        return None
    return start_cross_validate(
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
    pending = start_cross_validation(
        prepared_train,
        prepared_val,
        users,
        items,
        sources,
        cv_folds=cv_folds,
        seed=seed,
        k=k,
        cv_jobs=cv_jobs,
        scheme=scheme,
    )
    if pending is None:
        return None
    with pending:
        return pending.result()
