"""positive_scores turns either policy's prediction into one 1-D probability array, or says why it cannot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ab_router.policy import positive_scores


class _Fixed:
    """A stand-in model returning a fixed prediction."""

    def __init__(self, output: object) -> None:
        self.output = output

    def predict(self, frame: pd.DataFrame) -> object:
        return self.output


FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


@pytest.mark.parametrize(
    "output",
    [
        np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]),
        np.array([0.1, 0.4, 0.8]),
        np.array([[0.1], [0.4], [0.8]]),
        pd.Series([0.1, 0.4, 0.8]),
        pd.DataFrame({0: [0.9, 0.6, 0.2], 1: [0.1, 0.4, 0.8]}),
    ],
    ids=["sklearn-2-columns", "booster-1d", "one-column", "series", "dataframe"],
)
def test_every_output_shape_gives_the_positive_column(output: object) -> None:
    scores = positive_scores(_Fixed(output), FRAME)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, [0.1, 0.4, 0.8])


def test_wrong_length_is_rejected_with_both_counts() -> None:
    with pytest.raises(ValueError, match="returned 2 scores for 3 input rows"):
        positive_scores(_Fixed(np.array([0.1, 0.2])), FRAME)


def test_three_columns_are_rejected_naming_the_shape() -> None:
    with pytest.raises(ValueError, match=r"got shape \(3, 3\)"):
        positive_scores(_Fixed(np.full((3, 3), 0.3)), FRAME)


def test_class_labels_instead_of_probabilities_are_caught() -> None:
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*predict_proba"):
        positive_scores(_Fixed(np.array([0.0, 3.0, 1.0])), FRAME)


def test_real_sklearn_and_lightgbm_models_score_alike() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (x["a"] + 0.3 * rng.normal(size=200) > 0).astype(int)
    logistic = LogisticRegression().fit(x, y)

    class _ProbaPyfunc:  # what mlflow.sklearn's pyfunc does with pyfunc_predict_fn="predict_proba"
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return logistic.predict_proba(frame)

    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4}, lightgbm.Dataset(x, y), num_boost_round=5
    )
    a = positive_scores(_ProbaPyfunc(), x)
    b = positive_scores(booster, x)
    assert a.shape == b.shape == (200,)
    np.testing.assert_allclose(a, logistic.predict_proba(x)[:, 1])
    assert np.corrcoef(a, b)[0, 1] > 0.8
