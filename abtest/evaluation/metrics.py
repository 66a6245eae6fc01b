"""Metrics of one policy on the test rows, written as functions of per-user weights.

Every metric here is a ratio of sums over rows or over users. Reducing the rows to per-user sufficient statistics
once (positives and negatives per user and score level, loss sums, calibration-bin sums, per-user ranking values)
turns a user-clustered bootstrap replicate into one matrix product with that replicate's user weights: 1,000
replicates of 20,000 rows take about a second instead of 1,000 calls of scikit-learn. AUC and average precision
visit only the score levels that hold a positive, in int64 for the bootstrap's whole-number weights, so their
replicates equal the dense per-level sums bit for bit at less than half the CPU. The point estimate is the
same computation with every weight 1, and the tests check it against scikit-learn's metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ab_router.schema import ITEM_ID, LABEL, USER_ID

CLASSIFICATION_METRICS: tuple[str, ...] = ("auc", "pr_auc", "logloss", "brier", "ece")
RANKING_METRIC_STEMS: tuple[str, ...] = ("ndcg", "hitrate", "precision", "coverage")
# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER: frozenset[str] = frozenset({"logloss", "brier", "ece"})
# Set-size metrics: the count of distinct items in the users' top k. A bootstrap replicate draws users with
# replacement and so holds about 63% of the distinct users: the replicate's set is smaller and its value lower than
# the point estimate by an amount that depends on how the items saturate, not a constant shift. Percentile
# intervals then miss their own point estimate (coverage 0.227 with [0.163, 0.197] on ML-100K), the paired
# difference shrinks towards 0 the same way, and a basic (2θ̂ − q) interval would assume a shift that does not
# hold. These metrics are reported as point values without interval or p-value.
SET_SIZE_METRIC_STEMS: tuple[str, ...] = ("coverage",)
DEFAULT_CALIBRATION_BINS = 10
# Replicates are evaluated in chunks so a (replicates x score levels) matrix stays around this many cells.
_CHUNK_CELLS = 2_000_000


def ranking_metrics(k: int) -> tuple[str, ...]:
    """Names of the per-user ranking metrics at cut-off ``k`` (MLflow metric names cannot contain '@')."""
    return tuple(f"{stem}_at_{k}" for stem in RANKING_METRIC_STEMS)


def all_metrics(k: int) -> tuple[str, ...]:
    """Every metric the evaluate step reports, classification first."""
    return CLASSIFICATION_METRICS + ranking_metrics(k)


def has_bootstrap_interval(metric: str) -> bool:
    """False for set-size metrics (coverage), whose user-bootstrap replicates are biased (see above)."""
    return not any(metric.startswith(f"{stem}_at_") for stem in SET_SIZE_METRIC_STEMS)


def higher_is_better(metric: str) -> bool:
    """Direction of a metric, so a "win" means the same thing for AUC and for logloss."""
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class EvalRows:
    """The test rows both policies are scored on, with users and items coded 0..U-1 and 0..I-1."""

    user_code: np.ndarray
    item_code: np.ndarray
    label: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of test rows."""
        return len(self.label)

    @property
    def n_users(self) -> int:
        """Number of distinct users (the bootstrap's clusters)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of distinct items: the catalogue that coverage is measured against."""
        return len(self.item_ids)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> EvalRows:
        """Code the ``user_id``, ``item_id`` and ``label`` columns of a test frame."""
        missing = [c for c in (USER_ID, ITEM_ID, LABEL) if c not in frame.columns]
        if missing:
            raise ValueError(f"test frame is missing columns {missing}; it has {list(frame.columns)}")
        label = frame[LABEL].to_numpy()
        if not np.isin(label, (0, 1)).all():
            raise ValueError(f"label must be 0/1, got values {np.unique(label)[:10].tolist()}")
        user_codes, user_ids = pd.factorize(frame[USER_ID], sort=True)
        item_codes, item_ids = pd.factorize(frame[ITEM_ID], sort=True)
        return cls(
            user_code=np.asarray(user_codes, dtype=np.int64),
            item_code=np.asarray(item_codes, dtype=np.int64),
            label=label.astype(np.int64),
            user_ids=np.asarray(user_ids),
            item_ids=np.asarray(item_ids),
        )

    def subset(self, mask: np.ndarray) -> EvalRows:
        """The rows where ``mask`` is true, re-coded so every remaining user and item has a code."""
        users, user_codes = np.unique(self.user_code[mask], return_inverse=True)
        items, item_codes = np.unique(self.item_code[mask], return_inverse=True)
        return EvalRows(
            user_code=user_codes.astype(np.int64),
            item_code=item_codes.astype(np.int64),
            label=self.label[mask],
            user_ids=self.user_ids[users],
            item_ids=self.item_ids[items],
        )


@dataclass(frozen=True)
class PolicyStatistics:
    """Per-user sufficient statistics of one policy's scores on :class:`EvalRows`.

    ``positives`` / ``negatives``: users x score levels (descending) counts, for AUC and average precision.
    ``bin_*``: users x calibration bins, for expected calibration error. ``rank_*``: per-user ranking values at
    ``k`` and which users can be ranked (at least one positive). ``top_k``: users x items, 1 where the item is in
    the user's top ``k``.
    """

    positives: sparse.csr_array
    negatives: sparse.csr_array
    rows_per_user: np.ndarray
    logloss_sum: np.ndarray
    brier_sum: np.ndarray
    bin_count: np.ndarray
    bin_score_sum: np.ndarray
    bin_label_sum: np.ndarray
    k: int
    rankable: np.ndarray
    ndcg: np.ndarray
    hitrate: np.ndarray
    precision: np.ndarray
    top_k: sparse.csr_array
    n_items: int


def _check_scores(rows: EvalRows, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (rows.n_rows,):
        raise ValueError(f"scores must have shape ({rows.n_rows},) like the test rows, got {scores.shape}")
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError(
            f"scores must be finite probabilities in [0, 1], got range [{np.nanmin(scores)}, {np.nanmax(scores)}]"
        )
    return scores


def _per_user_ranking(rows: EvalRows, scores: np.ndarray, k: int):
    """Rank each user's test items by score (ties broken by item id) and score the top ``k``."""
    order = np.lexsort((rows.item_code, -scores, rows.user_code))
    users = rows.user_code[order]
    labels = rows.label[order].astype(float)
    first_row_of_user = np.searchsorted(users, np.arange(rows.n_users))
    rank = np.arange(len(users)) - first_row_of_user[users]
    in_top = rank < k
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal_dcg_by_positives = np.concatenate([[0.0], np.cumsum(discount)])
    dcg = np.bincount(
        users, weights=np.where(in_top, labels * discount[np.minimum(rank, k - 1)], 0.0), minlength=rows.n_users
    )
    positives = np.bincount(users, weights=labels, minlength=rows.n_users)
    rows_per_user = np.bincount(users, minlength=rows.n_users)
    hits = np.bincount(users, weights=labels * in_top, minlength=rows.n_users)
    rankable = positives > 0
    ideal = ideal_dcg_by_positives[np.minimum(positives, k).astype(int)]
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=rankable)
    hitrate = (hits > 0).astype(float)
    precision = hits / np.minimum(rows_per_user, k)
    top_k = sparse.csr_array(
        (np.ones(int(in_top.sum())), (users[in_top], rows.item_code[order][in_top])),
        shape=(rows.n_users, rows.n_items),
    )
    return rankable, ndcg, hitrate, precision, top_k


def policy_statistics(
    rows: EvalRows, scores: np.ndarray, *, k: int, n_bins: int = DEFAULT_CALIBRATION_BINS
) -> PolicyStatistics:
    """Reduce one policy's scores on ``rows`` to the per-user statistics every metric is computed from."""
    if k < 1:
        raise ValueError(f"k must be a positive int, got {k}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins}")
    scores = _check_scores(rows, scores)
    labels = rows.label.astype(float)
    levels, level_code = np.unique(-scores, return_inverse=True)  # level 0 = highest score
    shape = (rows.n_users, len(levels))
    positives = sparse.csr_array((labels, (rows.user_code, level_code)), shape=shape)
    negatives = sparse.csr_array((1.0 - labels, (rows.user_code, level_code)), shape=shape)
    eps = np.finfo(float).eps
    clipped = np.clip(scores, eps, 1 - eps)
    row_logloss = -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
    by_user = {"minlength": rows.n_users}
    bins = np.minimum((scores * n_bins).astype(int), n_bins - 1)
    cell = rows.user_code * n_bins + bins

    def per_bin(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=rows.n_users * n_bins).reshape(rows.n_users, n_bins)

    rankable, ndcg, hitrate, precision, top_k = _per_user_ranking(rows, scores, k)
    return PolicyStatistics(
        positives=positives,
        negatives=negatives,
        rows_per_user=np.bincount(rows.user_code, **by_user).astype(float),
        logloss_sum=np.bincount(rows.user_code, weights=row_logloss, **by_user),
        brier_sum=np.bincount(rows.user_code, weights=(scores - labels) ** 2, **by_user),
        bin_count=per_bin(None).astype(float),
        bin_score_sum=per_bin(scores),
        bin_label_sum=per_bin(labels),
        k=k,
        rankable=rankable.astype(float),
        ndcg=ndcg,
        hitrate=hitrate,
        precision=precision,
        top_k=top_k,
        n_items=rows.n_items,
    )


def _weighted_sums(matrix: sparse.csr_array, weights: np.ndarray) -> np.ndarray:
    """weights (R x U) @ matrix (U x G) as a dense R x G array, with the sparse matrix on the left."""
    return np.asarray((matrix.T @ weights.T).T)


def _dense_auc_ap(stats: PolicyStatistics, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUC and average precision over every score level (replicates x levels, dense): the point estimate's path.

    With one row of weights numpy sums a contiguous row pairwise, not in score order, so the point estimate keeps
    this form (cheap for one row) and its value stays what it was; replicates go through :func:`_ranking_auc_ap`.
    """
    pos = _weighted_sums(stats.positives, weights)
    neg = _weighted_sums(stats.negatives, weights)
    cum_pos = np.cumsum(pos, axis=1)
    cum_neg = np.cumsum(neg, axis=1)
    total_pos, total_neg = cum_pos[:, -1], cum_neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        # A positive at level g beats the negatives at lower levels and ties with half of its own level's.
        beaten = total_neg[:, None] - cum_neg + 0.5 * neg
        auc = (pos * beaten).sum(axis=1) / (total_pos * total_neg)
        precision = np.divide(cum_pos, cum_pos + cum_neg, out=np.zeros_like(cum_pos), where=pos > 0)
        average_precision = (pos * precision).sum(axis=1) / total_pos
    return auc, average_precision


def _grouped(entries: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions where each run of equal ``groups`` values starts among ``entries``, and those values."""
    if not len(entries):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    return starts, groups[starts]


def _exact_counts(values: np.ndarray) -> np.ndarray:
    """Counts as int64 when they are whole numbers (they are: sums of 0/1 labels), else as they are."""
    return values.astype(np.int64) if np.array_equal(values, np.rint(values)) else values


@dataclass(frozen=True)
class _RankingLayout:
    """Where one policy's positives and negatives sit among its score levels, for AUC and average precision.

    Only the J levels holding a positive add to either sum, so a replicate needs J values, not one per level.
    Positives: the first entry of each such level (``first_*``) plus the few further entries of levels where
    several users' rows tie (``extra_*``, summed per level). Negatives: every entry in level order
    (``negative_*``) with, per positive level, how many entries lie at or above it (``negatives_through``), and
    those that share a positive level (``tie_*``), which count half.
    """

    first_users: np.ndarray
    first_counts: np.ndarray | None  # None when every count is 1
    extra_users: np.ndarray
    extra_counts: np.ndarray
    extra_starts: np.ndarray
    extra_levels: np.ndarray  # 0..J-1
    negative_users: np.ndarray
    negative_counts: np.ndarray | None
    negatives_through: np.ndarray
    negatives_per_user: np.ndarray
    tie_users: np.ndarray
    tie_counts: np.ndarray
    tie_starts: np.ndarray
    tie_levels: np.ndarray  # 0..J-1

    @property
    def n_levels(self) -> int:
        """J: the score levels holding at least one positive."""
        return len(self.first_users)

    @classmethod
    def of(cls, stats: PolicyStatistics) -> _RankingLayout:
        """The layout of ``stats``' positives and negatives (explicit zeros dropped)."""
        positives, negatives = sparse.csc_array(stats.positives), sparse.csc_array(stats.negatives)
        positives.eliminate_zeros()
        negatives.eliminate_zeros()
        levels = np.flatnonzero(np.diff(positives.indptr) > 0)
        level_of_positive = np.repeat(np.arange(len(levels)), np.diff(positives.indptr)[levels])
        first = positives.indptr[levels]
        is_extra = np.ones(len(positives.indices), dtype=bool)
        is_extra[first] = False
        extra_starts, extra_levels = _grouped(np.flatnonzero(is_extra), level_of_positive[is_extra])
        tie_level = np.repeat(np.arange(len(levels)), np.diff(negatives.indptr)[levels])
        tie_entries = (
            np.concatenate([np.arange(negatives.indptr[g], negatives.indptr[g + 1]) for g in levels])
            if len(levels)
            else np.zeros(0, dtype=np.int64)
        )
        tie_starts, tie_levels = _grouped(tie_entries, tie_level)
        positive_counts, negative_counts = _exact_counts(positives.data), _exact_counts(negatives.data)
        return cls(
            first_users=positives.indices[first],
            first_counts=None if np.all(positive_counts[first] == 1) else positive_counts[first],
            extra_users=positives.indices[is_extra],
            extra_counts=positive_counts[is_extra],
            extra_starts=extra_starts,
            extra_levels=extra_levels,
            negative_users=negatives.indices,
            negative_counts=None if np.all(negative_counts == 1) else negative_counts,
            negatives_through=negatives.indptr[levels + 1],
            negatives_per_user=_exact_counts(np.asarray(stats.negatives.sum(axis=1)).ravel()),
            tie_users=negatives.indices[tie_entries],
            tie_counts=negative_counts[tie_entries],
            tie_starts=tie_starts,
            tie_levels=tie_levels,
        )


def _gathered(weights: np.ndarray, users: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """Replicates x entries: each entry's user weight times its count."""
    taken = np.take(weights, users, axis=1)
    return taken if counts is None else taken * counts


def _ranking_auc_ap(layout: _RankingLayout, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC AUC (ties count 1/2) and average precision (scikit-learn's step definition), per replicate.

    ``weights`` is replicates x users. With whole-number weights (the bootstrap's draw counts) every count,
    cumulative count and AUC's pair count is an exact integer, computed in int64; average precision's ratios are
    summed level by level in score order. The results are then bit-identical to the same sums taken densely over
    replicates x every score level (:func:`_dense_auc_ap`, the form this replaced).
    """
    n_replicates = len(weights)
    if layout.n_levels == 0:
        return np.full(n_replicates, np.nan), np.full(n_replicates, np.nan)
    weights = _exact_counts(weights)
    pos = _gathered(weights, layout.first_users, layout.first_counts)
    if len(layout.extra_users):
        extra = _gathered(weights, layout.extra_users, layout.extra_counts)
        pos[:, layout.extra_levels] += np.add.reduceat(extra, layout.extra_starts, axis=1)
    cum_pos = np.cumsum(pos, axis=1)
    if len(layout.negative_users):
        entries = np.cumsum(_gathered(weights, layout.negative_users, layout.negative_counts), axis=1)
        # Negatives at or above each positive level: the running count at its last negative entry (0 before any).
        cum_neg = np.take(entries, np.maximum(layout.negatives_through - 1, 0), axis=1)
        cum_neg[:, : int(np.sum(layout.negatives_through == 0))] = 0
        del entries
    else:
        cum_neg = np.zeros_like(cum_pos)
    total_pos = cum_pos[:, -1]
    total_neg = weights @ layout.negatives_per_user
    # AUC's numerator, sum_g pos_g (total_neg - cum_neg_g + tie_g / 2), as
    # total_pos total_neg - sum pos cum_neg + (sum pos tie) / 2.
    beaten = total_pos * total_neg - np.einsum("rj,rj->r", pos, cum_neg)
    tied = np.zeros(n_replicates, dtype=beaten.dtype)
    if len(layout.tie_users):
        ties = np.add.reduceat(_gathered(weights, layout.tie_users, layout.tie_counts), layout.tie_starts, axis=1)
        tied = np.einsum("rj,rj->r", pos[:, layout.tie_levels], ties)
    ranked = cum_pos + cum_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (beaten + 0.5 * tied) / (total_pos * total_neg)
        # precision at each positive level, times its positives; 0 where nothing was drawn yet (0 / 0).
        weighted_precision = pos * (cum_pos / ranked)
    np.copyto(weighted_precision, 0.0, where=ranked == 0)
    # Summed level by level in score order (rows of the transposed copy are added one after another).
    average_precision = np.ascontiguousarray(weighted_precision.T).sum(axis=0) / total_pos
    return auc, average_precision


def metric_values(stats: PolicyStatistics, weights: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Each metric in ``metrics`` for every row of ``weights`` (R x users); returns metric -> (R,) array."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    k = stats.k
    known = set(CLASSIFICATION_METRICS) | set(ranking_metrics(k))
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; allowed {sorted(known)}")
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        n_rows = weights @ stats.rows_per_user
        if "auc" in metrics or "pr_auc" in metrics:
            if len(weights) == 1:
                parts = [_dense_auc_ap(stats, weights)]
            else:
                layout = _RankingLayout.of(stats)
                chunk = max(2, _CHUNK_CELLS // max(layout.n_levels + len(layout.negative_users), 1))
                parts = [
                    _ranking_auc_ap(layout, weights[start : start + chunk])
                    for start in range(0, len(weights), chunk)
                ]
            out["auc"] = np.concatenate([p[0] for p in parts])
            out["pr_auc"] = np.concatenate([p[1] for p in parts])
        out["logloss"] = (weights @ stats.logloss_sum) / n_rows
        out["brier"] = (weights @ stats.brier_sum) / n_rows
        if "ece" in metrics:
            gap = np.abs(weights @ stats.bin_label_sum - weights @ stats.bin_score_sum)
            out["ece"] = gap.sum(axis=1) / n_rows
        ranked_users = weights @ stats.rankable
        ndcg, hitrate, precision, coverage = ranking_metrics(k)
        out[ndcg] = (weights @ (stats.ndcg * stats.rankable)) / ranked_users
        out[hitrate] = (weights @ (stats.hitrate * stats.rankable)) / ranked_users
        out[precision] = (weights @ (stats.precision * stats.rankable)) / ranked_users
        if coverage in metrics:
            # Exact for the point estimate (all weights 1). For resampled weights it is the set drawn users cover,
            # which is biased low: compare_policies gives coverage no interval (see SET_SIZE_METRIC_STEMS).
            drawn = (weights > 0).astype(float)
            covered = _weighted_sums(stats.top_k, drawn) > 0
            out[coverage] = covered.sum(axis=1) / stats.n_items
    return {m: out[m] for m in metrics}


def point_metrics(stats: PolicyStatistics, metrics: Sequence[str]) -> dict[str, float]:
    """The metrics on the test rows as they are (every user weighted once)."""
    ones = np.ones((1, len(stats.rows_per_user)))
    return {name: float(values[0]) for name, values in metric_values(stats, ones, metrics).items()}
