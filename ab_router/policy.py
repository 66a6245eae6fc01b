"""One scoring interface over both policies' pyfunc models.

Policy A (scikit-learn, logged with ``pyfunc_predict_fn="predict_proba"``) returns two columns, P(negative) and
P(positive); policy B (a LightGBM Booster) returns one. The router, the evaluation and the simulation all need
"the probability of a positive" as a 1-D array, so they call :func:`positive_scores` instead of guessing.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd


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
