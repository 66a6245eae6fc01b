"""ab_router.features: the router's numpy feature rows equal a plain per-row computation, bit for bit, alone or in
a batch of any size, and the frame `prepare` builds is the same numbers typed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ab_router.features import DOT_FEATURES, FeatureLookup, assemble_features
from ab_router.schema import FEATURE_COLUMNS, GENRE_COLUMNS, ITEM_ID, TASTE_COLUMNS, USER_ID, feature_dtypes
from tests.fixtures.router import handmade_tables, random_pairs

DTYPES = feature_dtypes()


@pytest.fixture(scope="module")
def tables():
    return handmade_tables()[0]


@pytest.fixture(scope="module")
def lookup(tables) -> FeatureLookup:
    return FeatureLookup(tables.user_features, tables.item_features, tables.defaults)


@pytest.fixture(scope="module")
def pairs(tables) -> pd.DataFrame:
    """The test split's pairs, random known pairs and unseen users / items (with known partners and together)."""
    test = tables.splits["test"][[USER_ID, ITEM_ID]]
    unseen = pd.DataFrame({USER_ID: [-1, 10**9, 1, 10**9], ITEM_ID: [1, 2, -5, 10**9]})
    return pd.concat([test, random_pairs(tables, 300, seed=5), unseen], ignore_index=True).astype(np.int64)


def _dot(left: list[float], right: list[float]) -> float:
    """Left-to-right sum of products from 0.0: the order prepare's column-major einsum adds in."""
    total = 0.0
    for a, b in zip(left, right, strict=True):
        total += a * b
    return total


def _records(table: pd.DataFrame, key: str) -> dict[int, dict[str, float]]:
    return {int(k): {c: float(v) for c, v in row.items()} for k, row in table.set_index(key).iterrows()}


def _side(records: dict[int, dict[str, float]], value: int, defaults: dict) -> tuple[dict[str, float], bool]:
    if value in records:
        return records[value], True
    return {c: math.nan if v is None else float(v) for c, v in defaults.items()}, False


def reference_row(tables, records, user_id: int, item_id: int) -> tuple[list[float], bool, bool]:
    """One pair's model input computed the obvious way, in plain Python floats (no numpy arithmetic)."""
    user, user_found = _side(records[USER_ID], user_id, tables.defaults["user"])
    item, item_found = _side(records[ITEM_ID], item_id, tables.defaults["item"])

    def vector(side: dict[str, float], prefix: str) -> list[float]:
        return [side[f"{prefix}{k}"] for k in range(sum(c.startswith(prefix) for c in side))]

    genres = [item[g] for g in GENRE_COLUMNS]
    pair = {
        "user_genre_affinity": _dot([user[t] for t in TASTE_COLUMNS], genres) / sum(genres)
        if sum(genres) > 0
        else user["user_pos_rate"],
        **{name: _dot(vector(user, u), vector(item, i)) for name, (u, i) in DOT_FEATURES.items()},
    }
    segment = vector(user, "user_segment_")
    pair["item_segment_pos_rate"] = (
        _dot(segment, vector(item, "item_segment_rate_")) if sum(segment) > 0 else item["item_pos_rate"]
    )
    values = []
    for name in FEATURE_COLUMNS:
        value = pair[name] if name in pair else user.get(name, item.get(name))
        values.append(float(int(value)) if DTYPES[name] is np.int64 else value)
    cold_user = not user_found or not user["user_count"] > 0
    cold_item = not item_found or not item["item_count"] > 0
    return values, cold_user, cold_item


def _bits(values: np.ndarray) -> np.ndarray:
    # NaN == NaN and -0.0 != 0.0 here: equality of the stored bits, not of the numbers.
    return np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)


def test_rows_equal_a_plain_per_row_computation_bit_for_bit(tables, lookup, pairs) -> None:
    rows = lookup.rows(pairs[USER_ID].to_numpy(), pairs[ITEM_ID].to_numpy())
    assert rows.matrix.shape == (len(pairs), len(FEATURE_COLUMNS)) and rows.matrix.dtype == np.float64
    records = {USER_ID: _records(tables.user_features, USER_ID), ITEM_ID: _records(tables.item_features, ITEM_ID)}
    expected = [reference_row(tables, records, u, i) for u, i in zip(pairs[USER_ID], pairs[ITEM_ID], strict=True)]
    np.testing.assert_array_equal(_bits(rows.matrix), _bits(np.array([values for values, _, _ in expected])))
    assert rows.cold_user.tolist() == [cold for _, cold, _ in expected]
    assert rows.cold_item.tolist() == [cold for _, _, cold in expected]
    assert rows.cold_user[-4:].tolist() == [True, True, False, True]  # the unseen users (user 1 is known)
    # Missing numbers reach the matrix as NaN (an item without a release year is in the handmade tables).
    assert np.isnan(rows.matrix[:, FEATURE_COLUMNS.index("release_year")]).any()


@pytest.mark.parametrize("size", [1, 2, 3, 17, 128])
def test_a_pair_gets_the_same_bits_alone_and_in_batches_of_any_size(lookup, pairs, size: int) -> None:
    users, items = pairs[USER_ID].to_numpy(), pairs[ITEM_ID].to_numpy()
    whole = lookup.rows(users, items)
    parts = [lookup.rows(users[k : k + size], items[k : k + size]) for k in range(0, len(pairs), size)]
    np.testing.assert_array_equal(_bits(np.vstack([p.matrix for p in parts])), _bits(whole.matrix))
    assert np.concatenate([p.cold_user for p in parts]).tolist() == whole.cold_user.tolist()


def test_the_frame_is_the_matrix_typed_as_the_schema_says(tables, lookup, pairs) -> None:
    pairs = pairs.set_axis(np.arange(len(pairs))[::-1] * 3)  # a caller's index is kept
    frame = assemble_features(pairs, tables.user_features, tables.item_features, tables.defaults)
    pd.testing.assert_frame_equal(frame, lookup.assemble(pairs))
    assert list(frame.columns) == [USER_ID, ITEM_ID, *FEATURE_COLUMNS, "cold_user", "cold_item"]
    assert frame.index.equals(pairs.index)
    assert {c: frame[c].dtype.type for c in FEATURE_COLUMNS} == DTYPES
    matrix = lookup.rows(pairs[USER_ID].to_numpy(), pairs[ITEM_ID].to_numpy()).matrix
    # What LightGBM and the compiled policy A make of the frame (int64 codes as float64) is the matrix.
    np.testing.assert_array_equal(_bits(frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)), _bits(matrix))


def test_tables_without_a_feature_column_are_refused_naming_it(tables) -> None:
    items = tables.item_features.drop(columns=["release_year"])
    defaults = {"user": tables.defaults["user"], "item": tables.defaults["item"]}
    with pytest.raises(ValueError, match=r"features \['release_year'\] are in neither lookup table"):
        FeatureLookup(tables.user_features, items, defaults)


def test_non_integer_ids_are_refused(lookup) -> None:
    with pytest.raises(ValueError, match="user_id and item_id must be integers"):
        lookup.assemble(pd.DataFrame({USER_ID: ["a"], ITEM_ID: [1]}))
