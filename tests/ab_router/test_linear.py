"""ab_router.linear: policy A's fitted pipeline compiled to numpy must score exactly as scikit-learn does."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from ab_router import linear, schema
from abtest.policies import models
from steps.cli import parameter_defaults
from tests.fixtures.frames import planted_frame

INTEGER_COLUMNS = [c for c, dtype in schema.feature_dtypes().items() if dtype is np.int64]


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return planted_frame(2000, seed=3)


@pytest.fixture(scope="module")
def probe(train: pd.DataFrame) -> pd.DataFrame:
    return schema.to_feature_frame(linear.probe_rows(schema.to_feature_frame(train.head(6)), INTEGER_COLUMNS))


def fit_a(train: pd.DataFrame, **overrides: str):
    params = {**parameter_defaults("train_a"), "seed": "0", **overrides}
    return models.fit_logistic(train, params=models.LogisticParams.from_params(params))


def test_probe_rows_cover_missing_numbers_and_unknown_codes(probe: pd.DataFrame) -> None:
    assert len(probe) == 24
    assert probe["release_year"].isna().sum() >= 6 and probe["mf_score"].isna().sum() == 6
    assert set(probe["occupation"].iloc[12:]) == {-1, 10**6}


@pytest.mark.parametrize(
    "overrides", [{}, {"penalty": "none"}, {"class_weight": "balanced", "C": "0.05"}, {"penalty": "l1"}]
)
def test_compiled_pipeline_equals_predict_proba(
    train: pd.DataFrame, probe: pd.DataFrame, overrides: dict[str, str]
) -> None:
    pipeline = fit_a(train, **overrides, max_iter="300")
    scorer = linear.compile_pipeline(pipeline)
    frame = pd.concat([schema.to_feature_frame(planted_frame(500, seed=9)), probe], ignore_index=True)
    expected = pipeline.predict_proba(frame)[:, 1]
    np.testing.assert_allclose(scorer.predict(frame), expected, rtol=0, atol=1e-12)
    # Rows with a missing release year and unknown codes are in there, and they score differently.
    assert np.ptp(scorer.predict(probe)) > 0.05


def test_column_order_of_the_input_frame_does_not_matter(train: pd.DataFrame, probe: pd.DataFrame) -> None:
    pipeline = fit_a(train)
    shuffled = probe[list(reversed(probe.columns))]
    np.testing.assert_allclose(
        linear.compile_pipeline(pipeline).predict(shuffled), pipeline.predict_proba(probe)[:, 1], atol=1e-12
    )


def test_an_unsupported_component_is_refused_by_name_and_the_pipeline_kept(
    train: pd.DataFrame, probe: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = fit_a(train)
    numeric = pipeline.named_steps["preprocess"].named_transformers_["numeric"]
    numeric.steps[1] = (
        "scale",
        MinMaxScaler().fit(numeric.steps[0][1].transform(train[list(schema.NUMERIC_FEATURES)])),
    )
    with pytest.raises(linear.UnsupportedPipelineError, match="MinMaxScaler is not compiled"):
        linear.compile_pipeline(pipeline)
    with caplog.at_level(logging.INFO, logger="ab_router.linear"):
        scorer = linear.fast_scorer(pipeline, probe)
    assert "keeps scikit-learn's predict_proba: transformer MinMaxScaler" in caplog.text
    np.testing.assert_array_equal(scorer(probe), pipeline.predict_proba(probe)[:, 1])
    with pytest.raises(linear.UnsupportedPipelineError, match="expected a Pipeline ending in LogisticRegression"):
        linear.compile_pipeline(make_pipeline(MinMaxScaler()))


def test_a_compiled_scorer_that_disagrees_on_the_probe_is_not_used(
    train: pd.DataFrame, probe: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = fit_a(train)
    honest = linear.compile_pipeline(pipeline)
    skewed = linear.LinearScorer(honest.columns, honest.transforms, honest.coef, honest.intercept + 1e-6)
    monkeypatch.setattr(linear, "compile_pipeline", lambda _: skewed)
    with caplog.at_level(logging.WARNING, logger="ab_router.linear"):
        scorer = linear.fast_scorer(pipeline, probe)
    assert "differs by" in caplog.text
    np.testing.assert_array_equal(scorer(probe), pipeline.predict_proba(probe)[:, 1])


def test_matrix_predictor_equals_predict_on_the_frame_and_a_row_alone_equals_it_in_a_batch(
    train: pd.DataFrame, probe: pd.DataFrame
) -> None:
    pipeline = fit_a(train)
    scorer = linear.checked_compile(pipeline, probe)
    assert scorer is not None
    frame = pd.concat([schema.to_feature_frame(planted_frame(300, seed=11)), probe], ignore_index=True)
    matrix = frame.loc[:, list(schema.FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    scores = scorer.matrix_predictor()(matrix)
    np.testing.assert_array_equal(scores, scorer.predict(frame))
    np.testing.assert_allclose(scores, pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)
    # einsum adds a row's terms in one order whatever the batch (BLAS's matrix-vector product blocks rows).
    alone = np.concatenate([scorer.matrix_predictor()(matrix[k : k + 1]) for k in range(len(matrix))])
    np.testing.assert_array_equal(alone, scores)


def test_matrix_predictor_takes_the_pipelines_columns_from_the_schema_matrix(train: pd.DataFrame) -> None:
    columns = ["occupation", "user_pos_rate", "item_pos_rate"]  # a subset, not in schema order
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[columns], train["label"])
    scorer = linear.compile_pipeline(pipeline)
    frame = schema.to_feature_frame(planted_frame(50, seed=12))
    matrix = frame.loc[:, list(schema.FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(
        scorer.matrix_predictor()(matrix), pipeline.predict_proba(frame[columns])[:, 1], rtol=0, atol=1e-12
    )


def test_checked_compile_gives_none_when_the_pipeline_is_not_compiled(
    train: pd.DataFrame, probe: pd.DataFrame
) -> None:
    pipeline = fit_a(train)
    numeric = pipeline.named_steps["preprocess"].named_transformers_["numeric"]
    numeric.steps[1] = (
        "scale",
        MinMaxScaler().fit(numeric.steps[0][1].transform(train[list(schema.NUMERIC_FEATURES)])),
    )
    assert linear.checked_compile(pipeline, probe) is None
