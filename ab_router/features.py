"""Features for a (user_id, item_id) pair, looked up from the per-user and per-item tables `prepare` saved.

The served router only receives ids, so every model input is either a column of the user table, a column of the
item table, or a pair feature computed here from a user vector and an item vector. `prepare` builds the feature
columns of val/test rows (and, fold by fold, of training rows) with this same function, so the served features
are the trained features by construction.

Ids missing from a table get the table's defaults (global priors) and are flagged ``cold_user`` / ``cold_item``;
so is an id that is in the table but had no training history. Nothing here raises for an unseen id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ab_router.schema import (
    FEATURE_COLUMNS,
    GENRE_COLUMNS,
    ITEM_ID,
    TASTE_COLUMNS,
    USER_ID,
    to_feature_frame,
)

# A pair is cold on a side when that side has no training history; the count feature is log1p(count), so 0.
_USER_HISTORY_COLUMN = "user_count"
_ITEM_HISTORY_COLUMN = "item_count"
USER_FACTOR_PREFIX = "user_factor_"
ITEM_FACTOR_PREFIX = "item_factor_"


def _default_value(value: Any) -> float:
    """JSON has no NaN, so defaults store an unknown value as null."""
    return math.nan if value is None else float(value)


def _lookup(
    table: pd.DataFrame, id_column: str, ids: np.ndarray, defaults: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of ``table`` gathered for ``ids`` (defaults where absent) and a found-mask."""
    columns = [c for c in table.columns if c != id_column]
    missing_defaults = [c for c in columns if c not in defaults]
    if missing_defaults:
        raise ValueError(f"feature defaults lack {missing_defaults} for the {id_column} table columns {columns}")
    position = pd.Index(table[id_column].to_numpy()).get_indexer(ids)
    found = position >= 0
    # One extra row at the end holds the defaults, so absent ids gather it without a branch.
    matrix = np.vstack(
        [table[columns].to_numpy(dtype=np.float64), [[_default_value(defaults[c]) for c in columns]]]
    )
    gathered = matrix[np.where(found, position, len(table))]
    return {name: gathered[:, k] for k, name in enumerate(columns)}, found


def _stack(values: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    """The ``prefix0, prefix1, ...`` columns as one matrix, in index order (empty when there are none)."""
    names = sorted((c for c in values if c.startswith(prefix)), key=lambda c: int(c[len(prefix) :]))
    if not names:
        return np.zeros((len(next(iter(values.values()))), 0))
    return np.column_stack([values[c] for c in names])


def _pair_features(user: Mapping[str, np.ndarray], item: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pair features: dot products of the user's vectors with the item's."""
    genres = np.column_stack([item[c] for c in GENRE_COLUMNS])
    taste = np.column_stack([user[c] for c in TASTE_COLUMNS])
    n_genres = genres.sum(axis=1)
    affinity = np.where(
        n_genres > 0, (taste * genres).sum(axis=1) / np.maximum(n_genres, 1), user["user_pos_rate"]
    )
    pair = {"user_genre_affinity": affinity}
    user_factors = _stack(user, USER_FACTOR_PREFIX)
    item_factors = _stack(item, ITEM_FACTOR_PREFIX)
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(
            f"user and item tables must carry the same number of factors, got {user_factors.shape[1]} "
            f"user and {item_factors.shape[1]} item factors"
        )
    if user_factors.shape[1]:
        pair["mf_score"] = (user_factors * item_factors).sum(axis=1)
    return pair


def assemble_features(
    pairs: pd.DataFrame,
    user_features: pd.DataFrame,
    item_features: pd.DataFrame,
    defaults: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """Model input for each (user_id, item_id) row of ``pairs``.

    Returns user_id, item_id, FEATURE_COLUMNS (schema dtypes) and boolean ``cold_user`` / ``cold_item``, in the
    row order of ``pairs``. ``defaults`` is ``{"user": {column: value}, "item": {column: value}}`` as saved by
    `prepare` (null = NaN).
    """
    absent = [c for c in (USER_ID, ITEM_ID) if c not in pairs.columns]
    if absent:
        raise ValueError(f"pairs must have columns {[USER_ID, ITEM_ID]}; missing {absent}")
    for side in ("user", "item"):
        if side not in defaults:
            raise ValueError(f"defaults must have 'user' and 'item' sections; got {sorted(defaults)}")
    try:
        user_ids = pairs[USER_ID].to_numpy(dtype=np.int64)
        item_ids = pairs[ITEM_ID].to_numpy(dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"user_id and item_id must be integers: {exc}") from None
    user, user_found = _lookup(user_features, USER_ID, user_ids, defaults["user"])
    item, item_found = _lookup(item_features, ITEM_ID, item_ids, defaults["item"])
    columns = {**user, **item, **_pair_features(user, item)}
    features = to_feature_frame(pd.DataFrame({c: columns[c] for c in FEATURE_COLUMNS}, copy=False))
    features.insert(0, ITEM_ID, item_ids)
    features.insert(0, USER_ID, user_ids)
    features["cold_user"] = ~user_found | (user[_USER_HISTORY_COLUMN] <= 0)
    features["cold_item"] = ~item_found | (item[_ITEM_HISTORY_COLUMN] <= 0)
    features.index = pairs.index
    return features
