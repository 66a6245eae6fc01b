"""Label the ratings and split them into train / val / test: pure functions, no I/O.

Input: interactions (user_id, item_id, rating, timestamp; int64). Output: a dict "train"/"val"/"test" of the
same columns plus ``label`` (int64 0/1), each with a fresh index. Modes:

- ``temporal`` (default): one global time cut. Rows are ordered by (timestamp, user_id, item_id), the last
  ``test_frac`` go to test and the ``val_frac`` before them to val. Rows sharing the timestamp at a cut all go to
  the earlier split, so every val timestamp is later than every train timestamp, and every test timestamp later
  than every val one: no split sees the future of the next.
- ``random``: a seeded permutation cut by the same fractions.
- ``autoint``: the protocol of published MovieLens CTR tables (AutoInt and followers): ratings equal to 3 are
  dropped, label = rating > 3, and a seeded random 80/10/10 split (``val_frac``/``test_frac`` and
  ``positive_threshold`` do not apply).

Same inputs and seed give identical frames (and so byte-identical Parquet files).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ab_router.schema import ITEM_ID, LABEL, RATING, TIMESTAMP, USER_ID
from abtest.config import SPLITS

SPLIT_MODES: tuple[str, ...] = ("temporal", "random", "autoint")
AUTOINT_FRACTIONS = (0.1, 0.1)  # (val, test)
AUTOINT_NEUTRAL_RATING = 3


def validate_fractions(*, val_frac: float, test_frac: float) -> None:
    """Both fractions in (0, 1) and together below 1, so every split gets rows."""
    for name, value in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    if val_frac + test_frac >= 1.0:
        raise ValueError(
            f"val_frac + test_frac must be below 1 so the training split is not empty, got "
            f"{val_frac} + {test_frac} = {val_frac + test_frac}"
        )


def add_label(interactions: pd.DataFrame, *, positive_threshold: int) -> pd.DataFrame:
    """Copy of ``interactions`` with ``label`` = 1 where rating >= positive_threshold."""
    if not 1 <= positive_threshold <= 5:
        raise ValueError(f"positive_threshold must be a rating 1..5, got {positive_threshold}")
    return interactions.assign(**{LABEL: (interactions[RATING] >= positive_threshold).astype(np.int64)})


def _cut_sizes(n_rows: int, *, val_frac: float, test_frac: float) -> tuple[int, int]:
    n_test = round(n_rows * test_frac)
    n_val = round(n_rows * val_frac)
    return n_val, n_test


def _take(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    return frame.iloc[np.sort(positions)].reset_index(drop=True)


def temporal_split(labelled: pd.DataFrame, *, val_frac: float, test_frac: float) -> dict[str, pd.DataFrame]:
    """Global time cut; ties at a cut go to the earlier split (see module docstring)."""
    ordered = labelled.sort_values([TIMESTAMP, USER_ID, ITEM_ID], kind="stable").reset_index(drop=True)
    n_val, n_test = _cut_sizes(len(ordered), val_frac=val_frac, test_frac=test_frac)
    times = ordered[TIMESTAMP].to_numpy()
    nominal = (len(ordered) - n_val - n_test, len(ordered) - n_test)
    # Move each cut past every row that shares the timestamp of the last row before it.
    cuts = [int(np.searchsorted(times, times[c - 1], side="right")) if c > 0 else 0 for c in nominal]
    bounds = {"train": (0, cuts[0]), "val": (cuts[0], max(cuts)), "test": (max(cuts), len(ordered))}
    return {name: ordered.iloc[start:end].reset_index(drop=True) for name, (start, end) in bounds.items()}


def random_split(
    labelled: pd.DataFrame, *, val_frac: float, test_frac: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Seeded random split; each split keeps the input's row order."""
    n_val, n_test = _cut_sizes(len(labelled), val_frac=val_frac, test_frac=test_frac)
    permutation = np.random.default_rng(seed).permutation(len(labelled))
    n_train = len(labelled) - n_val - n_test
    return {
        "train": _take(labelled, permutation[:n_train]),
        "val": _take(labelled, permutation[n_train : n_train + n_val]),
        "test": _take(labelled, permutation[n_train + n_val :]),
    }


def split_interactions(
    interactions: pd.DataFrame,
    *,
    mode: str,
    positive_threshold: int,
    val_frac: float,
    test_frac: float,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Label and split ``interactions`` by ``mode`` (temporal | random | autoint)."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"split must be one of {list(SPLIT_MODES)}, got {mode!r}")
    validate_fractions(val_frac=val_frac, test_frac=test_frac)
    if mode == "autoint":
        kept = interactions[interactions[RATING] != AUTOINT_NEUTRAL_RATING].reset_index(drop=True)
        labelled = add_label(kept, positive_threshold=AUTOINT_NEUTRAL_RATING + 1)
        val_frac, test_frac = AUTOINT_FRACTIONS
        splits = random_split(labelled, val_frac=val_frac, test_frac=test_frac, seed=seed)
    else:
        labelled = add_label(interactions, positive_threshold=positive_threshold)
        if mode == "temporal":
            splits = temporal_split(labelled, val_frac=val_frac, test_frac=test_frac)
        else:
            splits = random_split(labelled, val_frac=val_frac, test_frac=test_frac, seed=seed)
    empty = [name for name in SPLITS if splits[name].empty]
    if empty:
        raise ValueError(
            f"split {mode!r} left {empty} empty ({len(interactions)} ratings, val_frac={val_frac}, "
            f"test_frac={test_frac}); use more data or larger fractions"
        )
    return splits


def split_profile(splits: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Rows, users, items, positive rate, time range and cold users/items (vs train) of each split."""
    train_users = set(splits["train"][USER_ID])
    train_items = set(splits["train"][ITEM_ID])
    profile: dict[str, dict[str, float]] = {}
    for name, frame in splits.items():
        users = frame[USER_ID].unique()
        items = frame[ITEM_ID].unique()
        profile[name] = {
            "rows": len(frame),
            "users": int(users.size),
            "items": int(items.size),
            "positive_rate": float(frame[LABEL].mean()) if len(frame) else float("nan"),
            "mean_rating": float(frame[RATING].mean()) if len(frame) else float("nan"),
            "time_min": int(frame[TIMESTAMP].min()) if len(frame) else 0,
            "time_max": int(frame[TIMESTAMP].max()) if len(frame) else 0,
            "cold_users": int(sum(u not in train_users for u in users)),
            "cold_items": int(sum(i not in train_items for i in items)),
        }
    return profile
