"""Fixtures of the simulate area: a small prepared dataset and stand-in routers (no MLflow model needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ab_router.assignment import AssignmentConfig, assign_arms
from abtest.tracking.lineage import PreparedData
from tests.fixtures.features import synthetic_splits, synthetic_tables

ItemScore = Callable[[np.ndarray, np.ndarray], np.ndarray]


def prepared_data(*, n_users: int = 60, n_items: int = 40, n_ratings: int = 1500, seed: int = 0) -> PreparedData:
    """A PreparedData of synthetic tables (splits, users, items; feature tables unused by the stand-in router)."""
    interactions, users, items = synthetic_tables(n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=seed)
    empty = pd.DataFrame()
    return PreparedData(
        run_id="synthetic",
        params={},
        splits=synthetic_splits(interactions),
        users=users,
        items=items,
        user_features=empty,
        item_features=empty,
    )


class StandInRouter:
    """Assigns users like the real router (salted hash, ``split`` to B) and scores with one function per arm."""

    def __init__(self, score_a: ItemScore, score_b: ItemScore, *, split: float = 0.5, salt: str = "test") -> None:
        self.assignment = AssignmentConfig(split=split, salt=salt, assignment="hash")
        self.scores = {"A": score_a, "B": score_b}
        self.calls = 0

    def __call__(self, pairs: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
        """Router output columns for ``pairs`` (``force_policy`` honoured, as the real router does)."""
        self.calls += 1
        users, items = pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy()
        assigned = assign_arms(users, self.assignment)
        force = (params or {}).get("force_policy") or ""
        policy = np.full(len(pairs), force) if force else assigned.policy
        score = np.where(policy == "A", self.scores["A"](users, items), self.scores["B"](users, items))
        return pd.DataFrame(
            {
                "user_id": users,
                "item_id": items,
                "policy": policy.astype(object),
                "model_name": "stand_in",
                "model_version": np.where(policy == "A", "1", "2"),
                "score": score,
                "bucket": assigned.bucket,
                "cold_user": False,
                "cold_item": items > 35,
            }
        )


def item_hash_score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A policy that knows nothing: a fixed pseudo-random score per item."""
    return (np.asarray(items) * 2654435761 % 1000) / 1000.0


@pytest.fixture
def small_prepared() -> PreparedData:
    """60 users, 40 items, 1500 ratings split 70/15/15 by time."""
    return prepared_data()
