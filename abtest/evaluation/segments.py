"""Where does B beat A? The same paired comparison inside segments of the test rows.

Segments: how much training history the user and the item have (cold start), item popularity quartile, each
genre (a row belongs to every genre of its movie), gender and age band. Each segment gets its counts, A's and
B's metrics and the difference B − A with a paired user-clustered bootstrap interval, resampling users within
the segment. A segment with fewer than ``MIN_SEGMENT_USERS`` users gets point values only (a bootstrap over 2 or 3
users gives intervals and p-values that look precise and mean nothing), marked in its ``note`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ab_router.schema import GENRE_COLUMNS, GENRES, ITEM_ID, USER_ID
from abtest.evaluation.bootstrap import BootstrapConfig, MetricComparison, compare_policies
from abtest.evaluation.metrics import EvalRows, higher_is_better, point_metrics, policy_statistics

SEGMENT_METRICS: tuple[str, ...] = ("auc", "pr_auc", "logloss", "brier")
# Training interactions of a user / an item: 0 = cold start.
HISTORY_EDGES: tuple[float, ...] = (0, 1, 10, 30, np.inf)
HISTORY_LABELS: tuple[str, ...] = ("0", "1-9", "10-29", "30+")
# MovieLens-1M's age bands, applied to ML-100K's exact ages too.
AGE_EDGES: tuple[float, ...] = (0, 18, 25, 35, 45, 50, 56, np.inf)
AGE_LABELS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
# A segment needs this many positives and negatives for AUC to mean anything.
MIN_CLASS_ROWS = 5
# A segment needs this many users (the bootstrap's clusters) for intervals and p-values; below, point values only.
MIN_SEGMENT_USERS = 20
TOO_FEW_USERS_NOTE = f"too few users (< {MIN_SEGMENT_USERS}): point values only, no interval or p-value"
TOO_FEW_ROWS_NOTE = f"fewer than {MIN_CLASS_ROWS} positives or negatives: not measured"
COUNT_COLUMNS: tuple[str, ...] = ("family", "segment", "n_rows", "n_users", "positive_rate")


@dataclass(frozen=True)
class Segment:
    """A named subset of the test rows (``family`` groups segments that partition the rows, except genre)."""

    family: str
    name: str
    mask: np.ndarray


def _history_bucket(counts: pd.Series) -> pd.Series:
    return pd.cut(counts, bins=list(HISTORY_EDGES), labels=list(HISTORY_LABELS), right=False)


def define_segments(
    test: pd.DataFrame, train: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame
) -> list[Segment]:
    """Every segment of ``test`` rows, from training history counts and the user and item tables."""
    user_history = test[USER_ID].map(train[USER_ID].value_counts()).fillna(0)
    item_counts = train[ITEM_ID].value_counts()
    item_history = test[ITEM_ID].map(item_counts).fillna(0)
    segments: list[Segment] = []

    def add_partition(family: str, labels: pd.Series, order: Sequence[str]) -> None:
        values = labels.astype("string").to_numpy()
        for name in order:
            mask = values == name
            if mask.any():
                segments.append(Segment(family, str(name), np.asarray(mask, dtype=bool)))

    add_partition("user history", _history_bucket(user_history), HISTORY_LABELS)
    add_partition("item history", _history_bucket(item_history), HISTORY_LABELS)
    # Quartiles of the training popularity of the distinct test items (Q4 = the most popular quarter).
    distinct = item_history.groupby(test[ITEM_ID]).first()
    quartile = pd.qcut(distinct.rank(method="first"), 4, labels=["Q1 least", "Q2", "Q3", "Q4 most"])
    add_partition("item popularity", test[ITEM_ID].map(quartile), ["Q1 least", "Q2", "Q3", "Q4 most"])
    genre_flags = test[[ITEM_ID]].merge(items[[ITEM_ID, *GENRE_COLUMNS]], on=ITEM_ID, how="left")
    for genre, column in zip(GENRES, GENRE_COLUMNS, strict=True):
        mask = genre_flags[column].fillna(0).to_numpy() == 1
        if mask.any():
            segments.append(Segment("genre", genre, mask))
    profile = test[[USER_ID]].merge(users[[USER_ID, "gender", "age"]], on=USER_ID, how="left")
    add_partition("gender", profile["gender"], ["M", "F"])
    age_band = pd.cut(profile["age"], bins=list(AGE_EDGES), labels=list(AGE_LABELS), right=False)
    add_partition("age band", age_band, AGE_LABELS)
    return segments


def compare_segments(
    rows: EvalRows,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    segments: Sequence[Segment],
    *,
    config: BootstrapConfig,
    k: int,
    metrics: Sequence[str] = SEGMENT_METRICS,
) -> pd.DataFrame:
    """One row per (segment, metric): counts, A, B, B − A with intervals, and a ``note``.

    Fewer than ``MIN_CLASS_ROWS`` positives or negatives: no values. Fewer than ``MIN_SEGMENT_USERS`` users: A, B
    and B − A as point values, intervals and p NaN. The note says which (empty when the segment is measured).
    """
    records = []
    for segment in segments:
        subset = rows.subset(segment.mask)
        positives = int(subset.label.sum())
        negatives = subset.n_rows - positives
        counts = {
            "family": segment.family,
            "segment": segment.name,
            "n_rows": subset.n_rows,
            "n_users": subset.n_users,
            "positive_rate": positives / subset.n_rows,
        }
        if min(positives, negatives) < MIN_CLASS_ROWS:
            records += [{**counts, "metric": metric, "note": TOO_FEW_ROWS_NOTE} for metric in metrics]
            continue
        stats_a = policy_statistics(subset, scores_a[segment.mask], k=k)
        stats_b = policy_statistics(subset, scores_b[segment.mask], k=k)
        if subset.n_users < MIN_SEGMENT_USERS:
            point_a, point_b = point_metrics(stats_a, metrics), point_metrics(stats_b, metrics)
            records += [
                {
                    **counts,
                    "metric": metric,
                    "a": point_a[metric],
                    "b": point_b[metric],
                    "diff": point_b[metric] - point_a[metric],
                    "higher_is_better": higher_is_better(metric),
                    "note": TOO_FEW_USERS_NOTE,
                }
                for metric in metrics
            ]
            continue
        table = compare_policies(stats_a, stats_b, subset.n_users, metrics, config)
        records += [{**counts, **asdict(row), "note": ""} for row in table]
    columns = [*COUNT_COLUMNS, "metric", *MetricComparison.__dataclass_fields__, "note"]
    return pd.DataFrame.from_records(records).reindex(columns=list(dict.fromkeys(columns)))
