"""Small synthetic MovieLens-shaped tables for feature tests (normalised schema, no files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ab_router.schema import GENRE_COLUMNS


def synthetic_tables(
    *, n_users: int = 60, n_items: int = 40, n_ratings: int = 1500, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions with label, users, items) with latent taste structure, so collaborative signals matter.

    The last user and the last item have no interactions (profile known, no history); one zip starts with a
    letter and one release year is unknown, as in the real ML-100K.
    """
    rng = np.random.default_rng(seed)
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "age": rng.integers(15, 70, n_users).astype(np.int64),
            "gender": rng.choice(["M", "F"], n_users),
            "occupation": rng.choice(["student", "engineer", "writer", "other"], n_users),
            "zip_code": [f"{z:05d}" for z in rng.integers(0, 99999, n_users)],
        }
    )
    users.loc[1, "zip_code"] = "T8H1N"
    genres = (rng.random((n_items, len(GENRE_COLUMNS))) < 0.15).astype(np.int64)
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int64),
            "title": [f"Movie {i} (19{50 + i % 50})" for i in range(n_items)],
            "release_year": (1950 + np.arange(n_items) % 50).astype(np.float64),
        }
    )
    items.loc[2, "release_year"] = np.nan
    items[list(GENRE_COLUMNS)] = genres

    user_taste = rng.normal(size=(n_users, 3))
    item_taste = rng.normal(size=(n_items, 3))
    pairs = pd.MultiIndex.from_arrays(
        [rng.integers(1, n_users, n_ratings * 2), rng.integers(1, n_items, n_ratings * 2)]
    ).unique()[:n_ratings]
    u, i = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    affinity = (user_taste[u - 1] * item_taste[i - 1]).sum(axis=1) + 0.5 * rng.normal(size=len(u))
    rating = np.clip(np.round(3.3 + affinity), 1, 5).astype(np.int64)
    interactions = pd.DataFrame(
        {
            "user_id": u.astype(np.int64),
            "item_id": i.astype(np.int64),
            "rating": rating,
            "timestamp": (880_000_000 + rng.permutation(len(u)) * 60).astype(np.int64),
        }
    )
    interactions["label"] = (interactions["rating"] >= 4).astype(np.int64)
    return interactions, users, items


def synthetic_splits(interactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A time-ordered 70/15/15 split."""
    ordered = interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
    a, b = int(len(ordered) * 0.7), int(len(ordered) * 0.85)
    return {
        "train": ordered.iloc[:a].reset_index(drop=True),
        "val": ordered.iloc[a:b].reset_index(drop=True),
        "test": ordered.iloc[b:].reset_index(drop=True),
    }


@pytest.fixture(scope="session")
def synthetic_movielens() -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """(splits, users, items): normalised synthetic tables for feature and model tests."""
    interactions, users, items = synthetic_tables()
    return synthetic_splits(interactions), users, items
