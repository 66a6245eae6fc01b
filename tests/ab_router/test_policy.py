"""positive_scores turns either policy's prediction into one 1-D probability array, or says why it cannot; the
matrix scorers give a Booster's (or any model's) scores of the router's feature matrix."""

from __future__ import annotations

import lightgbm
import numpy as np
import pandas as pd
import pytest

from ab_router import schema
from ab_router.policy import booster_scorer, column_order, frame_scorer, positive_scores


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


def _codes_and_numbers(n_rows: int, *, seed: int) -> pd.DataFrame:
    """A typed feature frame with integer codes (some unknown: -1 and unseen large ones) and missing numbers."""
    from tests.fixtures.frames import planted_frame

    frame = schema.to_feature_frame(planted_frame(n_rows, seed=seed))
    frame.loc[::5, "occupation"] = 10**6
    frame.loc[::3, "mf_score"] = np.nan
    return frame


@pytest.fixture(scope="module")
def booster():
    train = _codes_and_numbers(600, seed=1)
    labels = (train["user_pos_rate"] + 0.5 * (train["occupation"] == 2) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 0}
    data = lightgbm.Dataset(train, labels, categorical_feature=list(schema.CATEGORICAL_FEATURES))
    return lightgbm.train(params, data, num_boost_round=20)


def test_booster_scorer_on_the_matrix_equals_predict_on_the_frame_bit_for_bit(booster) -> None:
    frame = _codes_and_numbers(300, seed=2)
    matrix = frame.to_numpy(dtype=np.float64)
    scores = booster_scorer(booster)(matrix)
    np.testing.assert_array_equal(scores, booster.predict(frame))
    np.testing.assert_array_equal(booster_scorer(booster)(matrix[:1]), scores[:1])
    assert np.ptp(scores) > 0.05


def test_booster_scorer_reads_the_boosters_own_feature_order() -> None:
    train = _codes_and_numbers(400, seed=3)
    reordered = train[list(reversed(schema.FEATURE_COLUMNS))]
    labels = (train["user_pos_rate"] > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(reordered, labels), num_boost_round=5)
    frame = _codes_and_numbers(50, seed=4)
    np.testing.assert_array_equal(
        booster_scorer(booster)(frame.to_numpy(dtype=np.float64)), booster.predict(frame[reordered.columns])
    )


def test_a_model_reading_columns_outside_the_schema_is_refused_naming_them() -> None:
    assert column_order(schema.FEATURE_COLUMNS, model="m") is None
    np.testing.assert_array_equal(column_order(["gender", "age"], model="m"), [1, 0])
    with pytest.raises(ValueError, match=r"policy X reads columns \['shoe_size'\] that are not in the feature"):
        column_order(["age", "shoe_size"], model="policy X")


def test_frame_scorer_hands_the_model_the_typed_feature_frame() -> None:
    seen: list[pd.DataFrame] = []

    class _Recording:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            seen.append(frame)
            return np.full(len(frame), 0.25)

    frame = _codes_and_numbers(7, seed=5)
    scores = frame_scorer(_Recording())(frame.to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(scores, np.full(7, 0.25))
    pd.testing.assert_frame_equal(seen[0], frame)  # the same columns, dtypes and values (index 0..n-1)
