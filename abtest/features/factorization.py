"""Biased matrix factorisation of the training ratings by alternating least squares, fully vectorised.

The model is ``r(u, i) ≈ mu + b_u + b_i + p_u · q_i``. It is the collaborative signal behind the ``mf_*`` pair
features: a user's taste is learnt from the items they rated and transferred through items other users rated
alike. Written as augmented vectors, ``user = [p_u, b_u, 1]`` and ``item = [q_i, 1, mu + b_i]``, the prediction is
one dot product, which is exactly what the served router can compute from a per-user and a per-item lookup row.
An unknown user is ``[0, 0, 1]`` (prediction = mu + b_i) and an unknown item ``[0, 1, mu]`` (mu + b_u).

Each half-step solves every user's (or item's) ridge regression at once: the normal matrices are one sparse
product (ratings indicator × per-item outer products) and one batched ``numpy.linalg.solve``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse


@dataclass(frozen=True)
class FactorizationConfig:
    """Size, regularisation and iterations of the factorisation."""

    n_factors: int = 16
    regularization: float = 5.0  # ridge penalty per user/item on factors and bias
    n_iterations: int = 12
    init_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.n_factors < 1 or self.n_iterations < 1:
            raise ValueError(
                f"n_factors and n_iterations must be >= 1, got {self.n_factors} and {self.n_iterations}"
            )
        if self.regularization <= 0:
            raise ValueError(
                f"regularization must be > 0 (it keeps every solve well-posed), got {self.regularization}"
            )


@dataclass(frozen=True)
class Factorization:
    """Augmented user and item vectors indexed by id; ``user_vectors @ item_vectors.T`` predicts the target."""

    user_vectors: pd.DataFrame  # index user_id, columns 0..n_factors+1
    item_vectors: pd.DataFrame  # index item_id, columns 0..n_factors+1
    global_mean: float

    def default_user(self) -> np.ndarray:
        """Vector of a user without history: only the item's bias and the global mean remain."""
        vector = np.zeros(self.user_vectors.shape[1])
        vector[-1] = 1.0
        return vector

    def default_item(self) -> np.ndarray:
        """Vector of an item without history: only the user's bias and the global mean remain."""
        vector = np.zeros(self.item_vectors.shape[1])
        vector[-2] = 1.0
        vector[-1] = self.global_mean
        return vector


def _ridge_solve(
    design: np.ndarray, indicator: sparse.csr_matrix, target: sparse.csr_matrix, reg: float
) -> np.ndarray:
    """Solve every row's ridge regression ``min |t_r - X_r w|^2 + reg |w|^2`` where X_r = rows of ``design``.

    ``indicator`` (rows × design rows) marks which design rows each row observed; ``target`` holds the targets at
    the same positions.
    """
    k = design.shape[1]
    # The normal matrices are symmetric: sum the k(k+1)/2 products on and above the diagonal (the sparse product
    # is most of the fit) and mirror them; d_a * d_b == d_b * d_a exactly, so the matrices are unchanged.
    upper_row, upper_col = np.triu_indices(k)
    upper = np.asarray(indicator @ (design[:, upper_row] * design[:, upper_col]))
    normal = np.empty((upper.shape[0], k, k))
    normal[:, upper_row, upper_col] = upper
    normal[:, upper_col, upper_row] = upper
    normal += reg * np.eye(k)
    rhs = np.asarray(target @ design)
    return np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]


def _csr_pattern(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, ...] | None:
    """Where each (row, col) entry lands in the CSR matrix built from them: (order, indices, indptr).

    The ALS targets change every half-step but not their positions, so the sort into CSR order is done once.
    None when a (row, col) pair repeats (the CSR constructor would sum the repeats): then every half-step builds
    its matrix from scratch as before.
    """
    positions = sparse.csr_matrix((np.arange(1, len(rows) + 1, dtype=np.float64), (rows, cols)), shape=shape)
    if positions.nnz != len(rows):
        return None
    return positions.data.astype(np.int64) - 1, positions.indices, positions.indptr


def _target_matrix(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], pattern: tuple | None
) -> sparse.csr_matrix:
    """``csr_matrix((values, (rows, cols)), shape)``, reusing the CSR positions when they are known."""
    if pattern is None:
        return sparse.csr_matrix((values, (rows, cols)), shape)
    order, indices, indptr = pattern
    return sparse.csr_matrix((values[order], indices, indptr), shape=shape)


def fit_factorization(
    user_ids: np.ndarray, item_ids: np.ndarray, targets: np.ndarray, *, config: FactorizationConfig, seed: int
) -> Factorization:
    """Fit ``mu + b_u + b_i + p_u · q_i`` to ``targets`` by ALS; deterministic given ``seed``."""
    users, user_index = np.unique(user_ids, return_inverse=True)
    items, item_index = np.unique(item_ids, return_inverse=True)
    n_users, n_items, k = len(users), len(items), config.n_factors
    targets = np.asarray(targets, dtype=np.float64)
    mu = float(targets.mean()) if len(targets) else 0.0
    ones = np.ones(len(targets))
    by_user = sparse.csr_matrix((ones, (user_index, item_index)), shape=(n_users, n_items))
    by_item = by_user.T.tocsr()

    rng = np.random.default_rng(seed)
    p = rng.normal(scale=config.init_scale, size=(n_users, k))
    q = rng.normal(scale=config.init_scale, size=(n_items, k))
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    residual = targets - mu
    by_user_pattern = _csr_pattern(user_index, item_index, (n_users, n_items))
    by_item_pattern = _csr_pattern(item_index, user_index, (n_items, n_users))
    for _ in range(config.n_iterations):
        # users: design rows [q_i, 1], target r - mu - b_i
        target = _target_matrix(
            residual - item_bias[item_index], user_index, item_index, (n_users, n_items), by_user_pattern
        )
        solved = _ridge_solve(np.column_stack([q, np.ones(n_items)]), by_user, target, config.regularization)
        p, user_bias = solved[:, :k], solved[:, k]
        # items: design rows [p_u, 1], target r - mu - b_u
        target = _target_matrix(
            residual - user_bias[user_index], item_index, user_index, (n_items, n_users), by_item_pattern
        )
        solved = _ridge_solve(np.column_stack([p, np.ones(n_users)]), by_item, target, config.regularization)
        q, item_bias = solved[:, :k], solved[:, k]

    user_vectors = np.column_stack([p, user_bias, np.ones(n_users)])
    item_vectors = np.column_stack([q, np.ones(n_items), mu + item_bias])
    return Factorization(
        user_vectors=pd.DataFrame(user_vectors, index=pd.Index(users, name="user_id")),
        item_vectors=pd.DataFrame(item_vectors, index=pd.Index(items, name="item_id")),
        global_mean=mu,
    )
