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
class _Vectors:
    """Columns of a table that a pair feature multiplies, stored one column per row (``columns x ids``).

    Gathering ids from it gives a column-major ``ids x columns`` block: the layout `prepare`'s features were
    computed on (numpy's ``matrix[rows][:, names]``), so ``einsum`` and ``sum`` add in the same order and the
    served pair features equal the trained ones bit for bit.
    """

    by_column: np.ndarray

    def take(self, rows: np.ndarray) -> np.ndarray:
        # np.take fills a C-ordered (columns, rows) array; its transpose is the column-major block.
        return np.take(self.by_column, rows, axis=1).T


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
        index = pd.Index(table[id_column].to_numpy(dtype=np.int64))
        if not index.is_unique:
            repeated = index[index.duplicated()][:5].tolist()
            raise ValueError(f"the {id_column} lookup table must list each id once; repeated: {repeated}")
        # Sorted ids and their rows: a lookup is one numpy searchsorted, with no pandas call per request.
        order = np.argsort(index.to_numpy(), kind="stable")
        self._sorted_ids = index.to_numpy()[order]
        self._row_of_sorted = order.astype(np.intp)
        self.default_row = len(index)
        self.matrix = np.vstack(
            [table[columns].to_numpy(dtype=np.float64), [[_default_value(defaults[c]) for c in columns]]]
        )
        self.position = {name: k for k, name in enumerate(columns)}

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matrix row of each id (the defaults' row when absent) and whether the id was found."""
        if not len(self._sorted_ids):
            return np.full(len(ids), self.default_row, dtype=np.intp), np.zeros(len(ids), dtype=bool)
        slot = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        found = self._sorted_ids[slot] == ids
        return np.where(found, self._row_of_sorted[slot], self.default_row), found

    def block(self, names: Sequence[str]) -> np.ndarray:
        """Columns ``names`` as one C-contiguous matrix (defaults' row last): gathered by row per request."""
        return np.ascontiguousarray(self.matrix[:, [self.position[n] for n in names]])

    def vectors(self, names: Sequence[str]) -> _Vectors:
        """Columns ``names`` laid out for the pair features' dot products (see :class:`_Vectors`)."""
        return _Vectors(np.ascontiguousarray(self.matrix[:, [self.position[n] for n in names]].T))

    def prefixed(self, prefix: str) -> list[str]:
        """Names ``prefix0, prefix1, ...`` present, in index order."""
        names = [c for c in self.position if c.startswith(prefix)]
        return sorted(names, key=lambda c: int(c[len(prefix) :]))


_DTYPES = feature_dtypes()
# Where each feature column sits in the feature matrix: the schema's order, which both policies were fitted on.
_SLOT = {name: k for k, name in enumerate(FEATURE_COLUMNS)}


def _as_model_input(block: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Integer features as the models receive them: the int64 code (``to_feature_frame``'s cast), as float64.

    A frame's int64 column reaches LightGBM and the compiled policy A as float64, so the matrix holds
    float64(int64(value)): the same numbers the pandas path hands them, bit for bit.
    """
    out = block.copy()
    for k, name in enumerate(names):
        if _DTYPES[name] is np.int64:
            out[:, k] = block[:, k].astype(np.int64).astype(np.float64)
    return out


@dataclass(frozen=True)
class FeatureRows:
    """The features of a batch of (user_id, item_id) pairs as numpy arrays, before any frame is built.

    ``matrix`` is float64, one column per FEATURE_COLUMNS entry in schema order; an integer feature holds its
    int64 value. It is what the router's policies score (``ab_router.policy``); :meth:`frame` is the typed
    frame ``assemble`` returns.
    """

    user_ids: np.ndarray  # int64
    item_ids: np.ndarray  # int64
    matrix: np.ndarray  # float64, (rows, len(FEATURE_COLUMNS))
    cold_user: np.ndarray  # bool
    cold_item: np.ndarray  # bool

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """user_id, item_id, FEATURE_COLUMNS (the schema's dtypes), cold_user, cold_item."""
        columns = {
            USER_ID: self.user_ids,
            ITEM_ID: self.item_ids,
            **{name: self.matrix[:, k].astype(_DTYPES[name], copy=False) for name, k in _SLOT.items()},
            "cold_user": self.cold_user,
            "cold_item": self.cold_item,
        }
        return pd.DataFrame(columns, index=index, copy=False)


def pair_ids(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The user_id and item_id columns of ``pairs`` as int64 arrays; a missing or non-integer column is refused."""
    names = pairs.columns.tolist()
    absent = [c for c in (USER_ID, ITEM_ID) if c not in names]
    if absent:
        raise ValueError(f"pairs must have columns {[USER_ID, ITEM_ID]}; missing {absent}")
    try:
        # The stored column arrays: ``pairs[name]`` builds a Series and, on each new frame, the column index's
        # hash table (~40 us of a ~0.5 ms single-row request).
        return tuple(  # type: ignore[return-value]
            np.asarray(pairs._get_column_array(names.index(c)), dtype=np.int64) for c in (USER_ID, ITEM_ID)
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"user_id and item_id must be integers: {exc}") from None


class FeatureLookup:
    """The lookup tables prepared once, for a router that assembles features on every request.

    ``FeatureLookup(user_features, item_features, defaults).assemble(pairs)`` equals
    ``assemble_features(pairs, user_features, item_features, defaults)`` without re-reading the tables each time.
    Everything a request needs is laid out here once: each table's direct feature columns (integer codes already
    cast as the models see them) and every vector a pair feature multiplies, as contiguous blocks, so a request
    is a few row gathers and dot products (:meth:`rows`).
    """

    def __init__(
        self, user_features: pd.DataFrame, item_features: pd.DataFrame, defaults: Mapping[str, Mapping[str, Any]]
    ) -> None:
        for side in ("user", "item"):
            if side not in defaults:
                raise ValueError(f"defaults must have 'user' and 'item' sections; got {sorted(defaults)}")
        users = self._users = _Table(user_features, USER_ID, defaults["user"])
        items = self._items = _Table(item_features, ITEM_ID, defaults["item"])
        pair_names = {"user_genre_affinity", *DOT_FEATURES, "item_segment_pos_rate"}
        direct = [name for name in FEATURE_COLUMNS if name not in pair_names]
        user_direct = [name for name in direct if name in users.position]
        item_direct = [name for name in direct if name not in users.position]
        absent = [name for name in item_direct if name not in items.position]
        if absent:
            raise ValueError(
                f"features {absent} are in neither lookup table (user columns {list(users.position)}, item "
                f"columns {list(items.position)}); rebuild the tables with the current feature code"
            )
        self._user_slots = np.array([_SLOT[n] for n in user_direct], dtype=np.intp)
        self._item_slots = np.array([_SLOT[n] for n in item_direct], dtype=np.intp)
        self._user_direct = _as_model_input(users.block(user_direct), user_direct)
        self._item_direct = _as_model_input(items.block(item_direct), item_direct)
        # The inputs of the pair features, laid out so the dot products add in prepare's order (_Vectors).
        self._taste, self._genres = users.vectors(TASTE_COLUMNS), items.vectors(GENRE_COLUMNS)
        self._user_pos_rate = users.block(["user_pos_rate"])[:, 0]
        self._item_pos_rate = items.block(["item_pos_rate"])[:, 0]
        self._dots: list[tuple[int, _Vectors, _Vectors]] = []
        for name, (user_prefix, item_prefix) in DOT_FEATURES.items():
            user_vector, item_vector = users.prefixed(user_prefix), items.prefixed(item_prefix)
            if not user_vector or len(user_vector) != len(item_vector):
                raise ValueError(
                    f"the lookup tables must carry the same number (> 0) of {user_prefix}k and {item_prefix}k "
                    f"columns, got {len(user_vector)} and {len(item_vector)}; rebuild them with the current "
                    "feature code (abtest.features.build)"
                )
            self._dots.append((_SLOT[name], users.vectors(user_vector), items.vectors(item_vector)))
        self._segment = users.vectors(users.prefixed(USER_SEGMENT_PREFIX))
        self._segment_rate = items.vectors(items.prefixed(ITEM_SEGMENT_PREFIX))
        self._user_history = users.block([_USER_HISTORY_COLUMN])[:, 0]
        self._item_history = items.block([_ITEM_HISTORY_COLUMN])[:, 0]

    def rows(self, user_ids: np.ndarray, item_ids: np.ndarray) -> FeatureRows:
        """Features of each (user_ids[k], item_ids[k]) pair as numpy arrays (int64 id arrays of one length).

        The same pair gets the same bits alone or in a batch of any size, and the same as `prepare` gave it.
        """
        user, user_found = self._users.rows(user_ids)
        item, item_found = self._items.rows(item_ids)
        n_rows = len(user)
        if n_rows == 1:
            # numpy's einsum adds up a lone row (contiguous) in another order than a column-major block of
            # several rows, which is how prepare computed these features: gather the row twice, keep one.
            user, item = np.repeat(user, 2), np.repeat(item, 2)
        matrix = np.empty((len(user), len(FEATURE_COLUMNS)), dtype=np.float64)
        matrix[:, self._user_slots] = self._user_direct[user]
        matrix[:, self._item_slots] = self._item_direct[item]
        genres = self._genres.take(item)
        n_genres = genres.sum(axis=1)
        matrix[:, _SLOT["user_genre_affinity"]] = np.where(
            n_genres > 0,
            np.einsum("ij,ij->i", self._taste.take(user), genres) / np.maximum(n_genres, 1),
            self._user_pos_rate[user],
        )
        for slot, user_vectors, item_vectors in self._dots:
            matrix[:, slot] = np.einsum("ij,ij->i", user_vectors.take(user), item_vectors.take(item))
        segment = self._segment.take(user)
        matrix[:, _SLOT["item_segment_pos_rate"]] = np.where(
            segment.sum(axis=1) > 0,
            np.einsum("ij,ij->i", segment, self._segment_rate.take(item)),
            self._item_pos_rate[item],
        )
        user, item = user[:n_rows], item[:n_rows]
        return FeatureRows(
            user_ids=user_ids,
            item_ids=item_ids,
            matrix=matrix[:n_rows],
            cold_user=~user_found | (self._user_history[user] <= 0),
            cold_item=~item_found | (self._item_history[item] <= 0),
        )

    def assemble(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Model input for each (user_id, item_id) row of ``pairs``; see :func:`assemble_features`."""
        user_ids, item_ids = pair_ids(pairs)
        return self.rows(user_ids, item_ids).frame(pairs.index)


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
