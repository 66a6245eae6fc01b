"""The `synthetic` environment's ground truth: a click probability for any (user, item) pair.

A regularised logistic regression on all labelled interactions (train, val and test) with a user effect, an item
effect and a user x genre effect, so users differ in which films they like, not only in how much. It is neither
policy (they see only features, not ids), so neither policy is the truth by construction. An id the model never
saw gets effect 0 (the average user or item). Clicks are then drawn from it, and the true CTR of any ranking is
known exactly: the mean probability of what was shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ab_router.schema import GENRE_COLUMNS, ITEM_ID, LABEL, USER_ID


@dataclass(frozen=True)
class ClickModel:
    """Logit = intercept + user effect + item effect + sum over the item's genres of the user's genre effect."""

    intercept: float
    user_ids: np.ndarray  # sorted
    user_effects: np.ndarray
    user_genre_effects: np.ndarray  # (users, genres)
    item_ids: np.ndarray  # sorted
    item_effects: np.ndarray
    item_genres: np.ndarray  # (items, genres) 0/1

    def probability(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """p(click) of each (user, item) pair; unseen ids contribute 0 to the logit."""
        users = _positions(self.user_ids, user_ids)
        items = _positions(self.item_ids, item_ids)
        known_user, known_item = users >= 0, items >= 0
        logit = np.full(len(users), self.intercept, dtype=np.float64)
        logit += np.where(known_user, self.user_effects[np.maximum(users, 0)], 0.0)
        logit += np.where(known_item, self.item_effects[np.maximum(items, 0)], 0.0)
        taste = self.user_genre_effects[np.maximum(users, 0)] * known_user[:, None]
        genres = self.item_genres[np.maximum(items, 0)] * known_item[:, None]
        logit += (taste * genres).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-logit))


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each id in ``sorted_ids``, -1 when absent."""
    ids = np.asarray(ids, dtype=np.int64)
    index = np.searchsorted(sorted_ids, ids).clip(0, max(len(sorted_ids) - 1, 0))
    found = (len(sorted_ids) > 0) & (sorted_ids[index] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    return np.where(found, index, -1)


def fit_click_model(interactions: pd.DataFrame, items: pd.DataFrame, *, C: float = 0.5) -> ClickModel:  # noqa: N803
    """Fit the ground truth on every labelled (user, item) of ``interactions``; ``items`` gives the genre flags."""
    if interactions.empty or interactions[LABEL].nunique() < 2:
        raise ValueError("the click model needs interactions with both labels (0 and 1)")
    user_ids = np.unique(interactions[USER_ID].to_numpy(dtype=np.int64))
    catalogue = items.set_index(ITEM_ID)
    item_ids = np.unique(np.concatenate([interactions[ITEM_ID].to_numpy(dtype=np.int64), catalogue.index]))
    item_genres = (
        catalogue.reindex(item_ids)[list(GENRE_COLUMNS)].fillna(0).to_numpy(dtype=np.float64)
    )  # items without metadata have no genre
    users = _positions(user_ids, interactions[USER_ID].to_numpy())
    rows_items = _positions(item_ids, interactions[ITEM_ID].to_numpy())
    n, n_users, n_items, n_genres = len(interactions), len(user_ids), len(item_ids), len(GENRE_COLUMNS)
    rows = np.arange(n)
    user_block = sparse.csr_matrix((np.ones(n), (rows, users)), shape=(n, n_users))
    item_block = sparse.csr_matrix((np.ones(n), (rows, rows_items)), shape=(n, n_items))
    genre_rows, genre_cols = np.nonzero(item_genres[rows_items])
    taste_block = sparse.csr_matrix(
        (np.ones(genre_rows.size), (genre_rows, users[genre_rows] * n_genres + genre_cols)),
        shape=(n, n_users * n_genres),
    )
    design = sparse.hstack([user_block, item_block, taste_block]).tocsr()
    # Imported here: only the synthetic environment fits a click model, and simulate's start-up skips sklearn.
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=2000).fit(design, interactions[LABEL].to_numpy())
    coef = model.coef_.ravel()
    return ClickModel(
        intercept=float(model.intercept_[0]),
        user_ids=user_ids,
        user_effects=coef[:n_users],
        user_genre_effects=coef[n_users + n_items :].reshape(n_users, n_genres),
        item_ids=item_ids,
        item_effects=coef[n_users : n_users + n_items],
        item_genres=item_genres,
    )
