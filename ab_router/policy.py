"""One scoring interface over both policies' pyfunc models.

Policy A (scikit-learn, logged with ``pyfunc_predict_fn="predict_proba"``) returns two columns, P(negative) and
P(positive); policy B (a LightGBM Booster) returns one. The router, the evaluation and the simulation all need
"the probability of a positive" as a 1-D array, so they call :func:`positive_scores` instead of guessing.

The served router scores numpy feature matrices (float64, FEATURE_COLUMNS order, ``ab_router.features``) and
builds no frame for a policy that can read a matrix: :func:`booster_scorer` calls LightGBM's ``Booster.predict``
on it, ``ab_router.linear`` computes policy A; :func:`frame_scorer` is the pandas path kept for anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ab_router.schema import FEATURE_COLUMNS, feature_frame


class Predictor(Protocol):
    """Anything with ``predict(frame)``: an ``mlflow.pyfunc.PyFuncModel`` or a fitted estimator."""

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> Any: ...


def to_positive_probability(output: Any, *, n_rows: int) -> np.ndarray:
    """Normalise a model's raw prediction to a 1-D float array of positive-class probabilities.

    Accepted: 1-D (already P(positive)), one column, or two columns (column 1 is the positive class).
    """
    values = output.to_numpy() if isinstance(output, pd.DataFrame | pd.Series) else np.asarray(output)
    if values.ndim == 2 and values.shape[1] == 2:
        values = values[:, 1]
    elif values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    elif values.ndim != 1:
        raise ValueError(
            "a policy must return P(positive) as 1-D or as 1 or 2 columns (column 1 = positive); "
            f"got shape {values.shape}"
        )
    if len(values) != n_rows:
        raise ValueError(f"the policy returned {len(values)} scores for {n_rows} input rows; expected one per row")
    if values.dtype.kind not in "fiub":
        raise ValueError(f"policy scores must be numeric probabilities, got dtype {values.dtype}")
    scores = values.astype(np.float64)
    finite = scores[~np.isnan(scores)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError(
            f"policy scores must be probabilities in [0, 1], got range [{finite.min():.4g}, {finite.max():.4g}]; "
            "log scikit-learn models with pyfunc_predict_fn='predict_proba'"
        )
    return scores


def positive_scores(model: Predictor, frame: pd.DataFrame) -> np.ndarray:
    """P(positive) for every row of ``frame`` from either policy's model, as a 1-D float64 array."""
    return to_positive_probability(model.predict(frame), n_rows=len(frame))


@dataclass(frozen=True)
class MatrixScorer:
    """A policy's P(positive) for a feature matrix (float64, FEATURE_COLUMNS order), and which path computes it."""

    kind: str  # "lightgbm Booster", "compiled pipeline", "predict_proba on a frame" or "pyfunc on a frame"
    score: Callable[[np.ndarray], np.ndarray]


def column_order(model_columns: Sequence[str], *, model: str) -> np.ndarray | None:
    """Matrix columns to take, in the model's input order; None when that is the schema's order already.

    Raises ValueError naming the columns when the model reads one the schema does not have.
    """
    position = {name: k for k, name in enumerate(FEATURE_COLUMNS)}
    unknown = [c for c in model_columns if c not in position]
    if unknown:
        raise ValueError(
            f"{model} reads columns {unknown} that are not in the feature schema {list(FEATURE_COLUMNS)}"
        )
    take = [position[c] for c in model_columns]
    return None if take == list(range(len(FEATURE_COLUMNS))) else np.array(take, dtype=np.intp)


def booster_scorer(booster: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``Booster.predict`` on the matrix, in the booster's feature order, on one OpenMP thread.

    Policy B was trained on a frame of integer codes and floats (``categorical_feature`` by name, no pandas
    categoricals), which LightGBM turns into exactly this float64 matrix, so the scores are the frame path's.
    One thread: LightGBM's default (all cores) spin-waits for ~20 ms per small request on a busy machine and
    gains nothing on 10,000 rows; a server scales with workers instead.
    """
    if getattr(booster, "pandas_categorical", None):
        raise ValueError("a booster trained on pandas categoricals needs a frame; it cannot score a code matrix")
    take = column_order(booster.feature_name(), model="the LightGBM booster")

    def score(matrix: np.ndarray) -> np.ndarray:
        values = matrix if take is None else matrix[:, take]
        return to_positive_probability(booster.predict(values, num_threads=1), n_rows=len(matrix))

    return score


def frame_scorer(model: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """The pandas path: the matrix as a typed feature frame, then ``positive_scores`` of the model."""
    return lambda matrix: positive_scores(model, feature_frame(matrix))
