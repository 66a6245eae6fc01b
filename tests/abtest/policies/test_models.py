"""abtest.policies.models: the pure fit/predict functions of policies A and B, on small in-memory frames."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ab_router import schema
from abtest.policies import models
from steps.cli import parameter_defaults
from tests.fixtures.frames import planted_frame


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return planted_frame(3000, seed=0)


@pytest.fixture(scope="module")
def val() -> pd.DataFrame:
    return planted_frame(1000, seed=1)


def logistic_params(**overrides) -> models.LogisticParams:
    return models.LogisticParams.from_params({**parameter_defaults("train_a"), "seed": "0", **overrides})


def lightgbm_params(**overrides) -> models.LightGBMParams:
    base = {**parameter_defaults("train_b"), "seed": "0", "n_estimators": "200", "early_stopping_rounds": "20"}
    return models.LightGBMParams.from_params({**base, **overrides})


def test_classification_metrics_match_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    metrics = models.classification_metrics(labels, scores)
    assert metrics["auc"] == pytest.approx(0.75)
    assert metrics["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert metrics["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert metrics["pr_auc"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_metrics_reject_one_class_labels() -> None:
    with pytest.raises(ValueError, match="both classes"):
        models.classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]))


def test_params_come_from_strings_and_ignore_other_keys() -> None:
    params = models.LogisticParams.from_params(
        {
            "C": "0.5",
            "penalty": "l1",
            "class_weight": "balanced",
            "max_iter": "50",
            "seed": "3",
            "prepare_run": "x",
        }
    )
    assert params == models.LogisticParams(C=0.5, penalty="l1", class_weight="balanced", max_iter=50, seed=3)


def test_params_missing_a_value_name_it() -> None:
    with pytest.raises(ValueError, match=r"needs parameters \['seed'\]"):
        models.LightGBMParams.from_params({**parameter_defaults("train_b"), "seed": ""})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"penalty": "l3"}, r"penalty must be one of \['l2', 'l1', 'none'\], got 'l3'"),
        ({"C": "0"}, r"C must be in \(0.0, inf\], got 0.0"),
        ({"class_weight": "auto"}, r"class_weight must be one of \['none', 'balanced'\]"),
    ],
)
def test_invalid_logistic_params_are_rejected_with_the_rule(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logistic_params(**overrides)


def test_invalid_lightgbm_params_are_rejected_with_the_rule() -> None:
    with pytest.raises(ValueError, match=r"bagging_fraction must be in \(0.0, 1.0\], got 1.5"):
        lightgbm_params(bagging_fraction="1.5")


def test_policy_a_learns_the_planted_signal(train: pd.DataFrame, val: pd.DataFrame) -> None:
    pipeline = models.fit_logistic(train, params=logistic_params())
    metrics = models.classification_metrics(val["label"].to_numpy(), models.predict_logistic(pipeline, val))
    assert metrics["auc"] > 0.8
    table = models.coefficient_table(pipeline).set_index("feature")
    assert table.loc["numeric__user_pos_rate", "coefficient"] > 1.0
    assert table.loc["categorical__occupation_2", "coefficient"] > 0.3
    # The largest coefficient (first row) is the strongest planted feature; the intercept is listed last.
    assert models.coefficient_table(pipeline)["feature"].iloc[0] == "numeric__user_pos_rate"
    assert models.coefficient_table(pipeline)["feature"].iloc[-1] == "intercept"


@pytest.mark.parametrize("penalty", ["l1", "none"])
def test_policy_a_supports_every_penalty(train: pd.DataFrame, val: pd.DataFrame, penalty: str) -> None:
    pipeline = models.fit_logistic(train, params=logistic_params(penalty=penalty, max_iter="300"))
    scores = models.predict_logistic(pipeline, val)
    assert models.classification_metrics(val["label"].to_numpy(), scores)["auc"] > 0.8


def test_policy_a_handles_unseen_category_codes(train: pd.DataFrame) -> None:
    pipeline = models.fit_logistic(train, params=logistic_params())
    unseen = train.head(3).assign(occupation=99)
    scores = models.predict_logistic(pipeline, unseen)
    assert scores.shape == (3,) and np.all((scores > 0) & (scores < 1))


def test_policies_reject_a_frame_missing_a_feature(train: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"missing columns \['age'\]"):
        models.fit_logistic(train.drop(columns=["age"]), params=logistic_params())


def test_policy_b_early_stops_and_records_the_curve(train: pd.DataFrame, val: pd.DataFrame) -> None:
    fit = models.fit_lightgbm(train, val, params=lightgbm_params())
    assert 1 <= fit.best_iteration < 200
    assert list(fit.curve.columns) == ["iteration", "train_auc", "train_logloss", "val_auc", "val_logloss"]
    # Early stopping ran 20 rounds past the best iteration, which has the best validation AUC.
    assert len(fit.curve) == fit.best_iteration + 20
    assert fit.curve["val_auc"].idxmax() + 1 == fit.best_iteration
    val_auc = models.classification_metrics(val["label"].to_numpy(), models.predict_lightgbm(fit.booster, val))
    assert val_auc["auc"] == pytest.approx(fit.curve["val_auc"].max())
    assert val_auc["auc"] > 0.8


def test_policy_b_without_the_train_curve_fits_the_same_model(train: pd.DataFrame, val: pd.DataFrame) -> None:
    # Refits (cross-validation) skip scoring the training set each round; the model must not change.
    with_curve = models.fit_lightgbm(train, val, params=lightgbm_params())
    without = models.fit_lightgbm(train, val, params=lightgbm_params(), record_train_curve=False)
    assert list(without.curve.columns) == ["iteration", "val_auc", "val_logloss"]
    assert without.best_iteration == with_curve.best_iteration
    np.testing.assert_array_equal(
        models.predict_lightgbm(without.booster, val), models.predict_lightgbm(with_curve.booster, val)
    )


def test_policy_b_uses_native_categoricals_and_the_given_num_leaves(train: pd.DataFrame) -> None:
    params = lightgbm_params(num_leaves="63", min_child_samples="5", early_stopping_rounds="0", n_estimators="5")
    booster = models.fit_lightgbm(train, None, params=params).booster
    assert booster.params["num_leaves"] == 63
    assert booster.params["bagging_freq"] == 1  # bagging_fraction 0.8 only acts with a bagging frequency
    model = booster.dump_model()
    leaves = [tree["num_leaves"] for tree in model["tree_info"]]
    assert max(leaves) > 31 and max(leaves) <= 63
    assert booster.current_iteration() == 5
    categorical = [model["feature_names"].index(name) for name in schema.CATEGORICAL_FEATURES]
    assert "[num_leaves: 63]" in booster.model_to_string()
    assert f"[categorical_feature: {','.join(map(str, categorical))}]" in booster.model_to_string()


def test_policy_b_keeps_the_schema_monotone_directions(train: pd.DataFrame) -> None:
    # Plant the opposite of the declared direction: a high mf_score makes a like LESS likely. Constrained, the
    # trees may not follow it (scores never fall as mf_score rises); unconstrained, they do.
    assert dict(zip(schema.FEATURE_COLUMNS, schema.MONOTONE_CONSTRAINTS, strict=True))["mf_score"] == 1
    rng = np.random.default_rng(5)
    frame = train.assign(label=(rng.random(len(train)) < 1 / (1 + np.exp(2.0 * train["mf_score"]))).astype(int))
    grid = pd.concat([frame.head(1)] * 21, ignore_index=True).assign(mf_score=np.linspace(-2.5, 2.5, 21))
    scores = {}
    for monotone in ("schema", "none"):
        params = lightgbm_params(monotone=monotone, early_stopping_rounds="0", n_estimators="60")
        booster = models.fit_lightgbm(frame, None, params=params).booster
        assert ("monotone_constraints" in booster.params) == (monotone == "schema")
        scores[monotone] = models.predict_lightgbm(booster, grid)
    assert np.all(np.diff(scores["schema"]) >= -1e-12)
    assert scores["none"][0] - scores["none"][-1] > 0.4  # the free model learnt the planted decrease


def test_policy_b_rejects_an_unknown_monotone_choice() -> None:
    with pytest.raises(ValueError, match=r"monotone must be one of \['schema', 'none'\], got 'yes'"):
        lightgbm_params(monotone="yes")


def test_policy_b_is_deterministic(train: pd.DataFrame, val: pd.DataFrame) -> None:
    first = models.fit_lightgbm(train, val, params=lightgbm_params())
    second = models.fit_lightgbm(train, val, params=lightgbm_params())
    np.testing.assert_array_equal(
        models.predict_lightgbm(first.booster, val), models.predict_lightgbm(second.booster, val)
    )
    other_seed = models.fit_lightgbm(train, val, params=lightgbm_params(seed="1"))
    assert not np.array_equal(
        models.predict_lightgbm(first.booster, val), models.predict_lightgbm(other_seed.booster, val)
    )


def test_importance_ranks_the_planted_features_first(train: pd.DataFrame, val: pd.DataFrame) -> None:
    booster = models.fit_lightgbm(train, val, params=lightgbm_params()).booster
    table = models.importance_table(booster)
    assert set(table["feature"].head(2)) == {"user_pos_rate", "item_pos_rate"}
    assert table["gain"].is_monotonic_decreasing


def test_fit_policy_dispatches_on_the_policy_name(train: pd.DataFrame, val: pd.DataFrame) -> None:
    a = models.fit_policy("A", train, val, params={**parameter_defaults("train_a"), "seed": "0"})
    b_params = {**parameter_defaults("train_b"), "seed": "0", "n_estimators": "30"}
    b = models.fit_policy("B", train, val, params=b_params)
    assert a.predict(val).shape == b.predict(val).shape == (len(val),)
    assert isinstance(b.model, lgb.Booster)
    with pytest.raises(ValueError, match=r"policy must be one of \['A', 'B'\], got 'C'"):
        models.fit_policy("C", train, val, params={})  # type: ignore[arg-type]
