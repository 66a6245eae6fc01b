"""abtest.features.factorization: the ALS fit equals the straightforward form it was sped up from, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from abtest.features.factorization import FactorizationConfig, fit_factorization


def _reference_fit(user_ids, item_ids, targets, *, config: FactorizationConfig, seed: int):
    """The fit as first written: full k x k outer products, every target matrix built from its triplets."""
    users, user_index = np.unique(user_ids, return_inverse=True)
    items, item_index = np.unique(item_ids, return_inverse=True)
    n_users, n_items, k = len(users), len(items), config.n_factors
    targets = np.asarray(targets, dtype=np.float64)
    mu = float(targets.mean())
    by_user = sparse.csr_matrix((np.ones(len(targets)), (user_index, item_index)), shape=(n_users, n_items))
    by_item = by_user.T.tocsr()

    def ridge(design, indicator, target, reg):
        width = design.shape[1]
        outer = (design[:, :, None] * design[:, None, :]).reshape(len(design), width * width)
        normal = np.asarray(indicator @ outer).reshape(-1, width, width) + reg * np.eye(width)
        return np.linalg.solve(normal, np.asarray(target @ design)[:, :, None])[:, :, 0]

    rng = np.random.default_rng(seed)
    p = rng.normal(scale=config.init_scale, size=(n_users, k))
    q = rng.normal(scale=config.init_scale, size=(n_items, k))
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    residual = targets - mu
    for _ in range(config.n_iterations):
        target = sparse.csr_matrix(
            (residual - item_bias[item_index], (user_index, item_index)), (n_users, n_items)
        )
        solved = ridge(np.column_stack([q, np.ones(n_items)]), by_user, target, config.regularization)
        p, user_bias = solved[:, :k], solved[:, k]
        target = sparse.csr_matrix(
            (residual - user_bias[user_index], (item_index, user_index)), (n_items, n_users)
        )
        solved = ridge(np.column_stack([p, np.ones(n_users)]), by_item, target, config.regularization)
        q, item_bias = solved[:, :k], solved[:, k]
    return np.column_stack([p, user_bias, np.ones(n_users)]), np.column_stack(
        [q, np.ones(n_items), mu + item_bias]
    )


@pytest.mark.parametrize("repeated_pairs", [False, True], ids=["distinct pairs", "a pair rated twice"])
def test_fit_equals_the_reference_bit_for_bit(repeated_pairs: bool):
    rng = np.random.default_rng(0)
    pairs = rng.choice(60 * 40, size=700, replace=False)
    user_ids, item_ids = pairs // 40 + 1, pairs % 40 + 1
    if repeated_pairs:
        user_ids, item_ids = np.append(user_ids, user_ids[:5]), np.append(item_ids, item_ids[:5])
    ratings = rng.integers(1, 6, len(user_ids)).astype(float)
    config = FactorizationConfig(n_factors=6, regularization=3.0, n_iterations=4)
    fitted = fit_factorization(user_ids, item_ids, ratings, config=config, seed=7)
    users, items = _reference_fit(user_ids, item_ids, ratings, config=config, seed=7)
    assert np.array_equal(fitted.user_vectors.to_numpy(), users)
    assert np.array_equal(fitted.item_vectors.to_numpy(), items)
    assert fitted.user_vectors.index.tolist() == sorted(set(user_ids.tolist()))
