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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ab_router.schema import (
    FEATURE_COLUMNS,
    GENRE_COLUMNS,
    ITEM_ID,
    TASTE_COLUMNS,
    USER_ID,
    feature_dtypes,
)

# A pair is cold on a side when that side has no training history; the count feature is log1p(count), so 0.
_USER_HISTORY_COLUMN = "user_count"
_ITEM_HISTORY_COLUMN = "item_count"
USER_FACTOR_PREFIX = "user_factor_"
ITEM_FACTOR_PREFIX = "item_factor_"
LIKED_PREFIX = "user_liked_direction_"  # mean latent direction of the items the user liked
DISLIKED_PREFIX = "user_disliked_direction_"  # ... and of the items the user did not like
ITEM_DIRECTION_PREFIX = "item_direction_"  # the item's latent factors scaled to unit length
USER_LATENT_PREFIX = "user_latent_"  # the factorisation's latent factors without the biases
ITEM_LATENT_PREFIX = "item_latent_"
# Pair features that are one dot product of a user vector and an item vector: name -> (user prefix, item prefix).
DOT_FEATURES: dict[str, tuple[str, str]] = {
    "mf_score": (USER_FACTOR_PREFIX, ITEM_FACTOR_PREFIX),
    "liked_similarity": (LIKED_PREFIX, ITEM_DIRECTION_PREFIX),
    "disliked_similarity": (DISLIKED_PREFIX, ITEM_DIRECTION_PREFIX),
    "mf_interaction": (USER_LATENT_PREFIX, ITEM_LATENT_PREFIX),
}
USER_SEGMENT_PREFIX = "user_segment_"  # one-hot demographic segment of the user
ITEM_SEGMENT_PREFIX = "item_segment_rate_"  # the item's positive rate within each segment


def _default_value(value: Any) -> float:
    """JSON has no NaN, so defaults store an unknown value as null."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class _Gathered:
    """Rows of one lookup table gathered for a batch of ids: one float matrix and its column positions."""

    matrix: np.ndarray
    position: Mapping[str, int]
    found: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, self.position[name]]

    def block(self, names: Sequence[str]) -> np.ndarray:
        return self.matrix[:, [self.position[n] for n in names]]

    def prefixed(self, prefix: str) -> list[str]:
        """Names ``prefix0, prefix1, ...`` present, in index order."""
        names = [c for c in self.position if c.startswith(prefix)]
        return sorted(names, key=lambda c: int(c[len(prefix) :]))


class _Table:
    """One lookup table as a float matrix whose extra last row holds the defaults, indexed by id."""

    def __init__(self, table: pd.DataFrame, id_column: str, defaults: Mapping[str, Any]) -> None:
        if id_column not in table.columns:
            raise ValueError(
                f"the {id_column} lookup table has no {id_column!r} column; it has {list(table.columns)}"
            )
        columns = [c for c in table.columns if c != id_column]
        missing_defaults = [c for c in columns if c not in defaults]
        if missing_defaults:
            raise ValueError(
                f"feature defaults lack {missing_defaults} for the {id_column} table columns {columns}"
            )
        self.index = pd.Index(table[id_column].to_numpy(dtype=np.int64))
        if not self.index.is_unique:
            repeated = self.index[self.index.duplicated()][:5].tolist()
            raise ValueError(f"the {id_column} lookup table must list each id once; repeated: {repeated}")
        self.matrix = np.vstack(
            [table[columns].to_numpy(dtype=np.float64), [[_default_value(defaults[c]) for c in columns]]]
        )
        self.position = {name: k for k, name in enumerate(columns)}

    def gather(self, ids: np.ndarray) -> _Gathered:
        position = self.index.get_indexer(ids)
        found = position >= 0
        return _Gathered(self.matrix[np.where(found, position, len(self.index))], self.position, found)


def _pair_features(user: _Gathered, item: _Gathered) -> dict[str, np.ndarray]:
    """Pair features: dot products of the user's vectors with the item's."""
    genres = item.block(GENRE_COLUMNS)
    n_genres = genres.sum(axis=1)
    affinity = np.where(
        n_genres > 0,
        np.einsum("ij,ij->i", user.block(TASTE_COLUMNS), genres) / np.maximum(n_genres, 1),
        user.column("user_pos_rate"),
    )
    pair = {"user_genre_affinity": affinity}
    for name, (user_prefix, item_prefix) in DOT_FEATURES.items():
        user_vector, item_vector = user.prefixed(user_prefix), item.prefixed(item_prefix)
        if not user_vector or len(user_vector) != len(item_vector):
            raise ValueError(
                f"the lookup tables must carry the same number (> 0) of {user_prefix}k and {item_prefix}k "
                f"columns, got {len(user_vector)} and {len(item_vector)}; rebuild them with the current "
                "feature code (abtest.features.build)"
            )
        pair[name] = np.einsum("ij,ij->i", user.block(user_vector), item.block(item_vector))
    segment = user.block(user.prefixed(USER_SEGMENT_PREFIX))
    segment_rate = np.where(
        segment.sum(axis=1) > 0,
        np.einsum("ij,ij->i", segment, item.block(item.prefixed(ITEM_SEGMENT_PREFIX))),
        item.column("item_pos_rate"),
    )
    pair["item_segment_pos_rate"] = segment_rate
    return pair


_DTYPES = feature_dtypes()


def _column(name: str, user: _Gathered, item: _Gathered, pair: Mapping[str, np.ndarray]) -> np.ndarray:
    values = pair[name] if name in pair else (user if name in user.position else item).column(name)
    return values.astype(_DTYPES[name], copy=False)


class FeatureLookup:
    """The lookup tables prepared once, for a router that assembles features on every request.

    ``FeatureLookup(user_features, item_features, defaults).assemble(pairs)`` equals
    ``assemble_features(pairs, user_features, item_features, defaults)`` without re-reading the tables each time.
    """

    def __init__(
        self, user_features: pd.DataFrame, item_features: pd.DataFrame, defaults: Mapping[str, Mapping[str, Any]]
    ) -> None:
        for side in ("user", "item"):
            if side not in defaults:
                raise ValueError(f"defaults must have 'user' and 'item' sections; got {sorted(defaults)}")
        self._users = _Table(user_features, USER_ID, defaults["user"])
        self._items = _Table(item_features, ITEM_ID, defaults["item"])

    def assemble(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Model input for each (user_id, item_id) row of ``pairs``; see :func:`assemble_features`."""
        absent = [c for c in (USER_ID, ITEM_ID) if c not in pairs.columns]
        if absent:
            raise ValueError(f"pairs must have columns {[USER_ID, ITEM_ID]}; missing {absent}")
        try:
            user_ids = pairs[USER_ID].to_numpy(dtype=np.int64)
            item_ids = pairs[ITEM_ID].to_numpy(dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"user_id and item_id must be integers: {exc}") from None
        user = self._users.gather(user_ids)
        item = self._items.gather(item_ids)
        pair = _pair_features(user, item)
        columns = {
            USER_ID: user_ids,
            ITEM_ID: item_ids,
            **{name: _column(name, user, item, pair) for name in FEATURE_COLUMNS},
            "cold_user": ~user.found | (user.column(_USER_HISTORY_COLUMN) <= 0),
            "cold_item": ~item.found | (item.column(_ITEM_HISTORY_COLUMN) <= 0),
        }
        return pd.DataFrame(columns, index=pairs.index, copy=False)


def assemble_features(
    pairs: pd.DataFrame,
    user_features: pd.DataFrame,
    item_features: pd.DataFrame,
    defaults: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """Model input for each (user_id, item_id) row of ``pairs``.

    Returns user_id, item_id, FEATURE_COLUMNS (exactly the schema's dtypes, as ``schema.to_feature_frame``
    gives) and boolean ``cold_user`` / ``cold_item``, in the row order and index of ``pairs``. ``defaults`` is
    ``{"user": {column: value}, "item": {column: value}}`` as saved by `prepare` (null = NaN). A caller that
    assembles many batches from the same tables should hold a :class:`FeatureLookup` instead.
    """
    return FeatureLookup(user_features, item_features, defaults).assemble(pairs)
