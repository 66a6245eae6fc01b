"""The two policies of the A/B test as pure fit/predict functions: no MLflow, no files.

Policy A is a scikit-learn ``Pipeline`` (median imputation + scaling of numeric features, one-hot of categorical
codes, genre flags passed through, then ``LogisticRegression``). Policy B is a LightGBM ``Booster`` trained with
``lgb.train`` on the same raw feature frame, with the categorical codes handled natively.

Both read exactly ``ab_router.schema.FEATURE_COLUMNS`` (through ``schema.to_feature_frame``) and score the
probability of a positive. The training steps (``steps.train_a`` / ``steps.train_b``), the evaluate step's
cross-validation and the quality benchmark all fit through here, so the same parameters give the same model
everywhere. Parameter defaults are not written here: MLproject holds them; the dataclasses below only type them.

LightGBM and scikit-learn are imported inside the functions that use them (about a second each when a process
starts): train_a never loads LightGBM, train_b loads scikit-learn only for its metrics, and the steps that only
read the parameter dataclasses (main's checks) load neither (tests/project/test_startup.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ab_router import schema
from ab_router.arms import ARMS, policy_arm

if TYPE_CHECKING:
    import lightgbm as lgb
    from sklearn.pipeline import Pipeline

PolicyName = str  # an arm of ab_router.arms

PENALTIES: tuple[str, ...] = ("l2", "l1", "none")
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")
# Policy B's monotone constraints: "schema" = each feature's declared direction (ab_router.schema), "none" = free.
MONOTONE_CHOICES: tuple[str, ...] = ("schema", "none")

# LightGBM is only bit-for-bit reproducible with deterministic=True and a fixed thread count. One thread: on the
# small, shared 2-core machines this project targets, OpenMP's 2-thread barriers made a fit 25x slower under load
# (2 s vs 46 s for 300 rounds on 3000 rows), and ML-100K is small enough that one core trains in seconds.
LIGHTGBM_NUM_THREADS = 1


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_range(name: str, value: float, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high or math.isnan(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def _from_params(cls: type, params: Mapping[str, Any]):
    """Build a params dataclass from a mapping such as a run's logged params (strings); other keys are ignored."""
    missing = [f.name for f in fields(cls) if f.name not in params or params[f.name] in ("", None)]
    if missing:
        raise ValueError(f"{cls.__name__} needs parameters {missing}; got {sorted(params)}")
    casts: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str}
    return cls(**{f.name: casts[str(f.type)](params[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class LogisticParams:
    """Hyperparameters of policy A (types only; defaults live in MLproject's train_a entry point)."""

    C: float
    penalty: str
    class_weight: str
    max_iter: int
    seed: int

    def __post_init__(self) -> None:
        _check_range("C", self.C, low=0.0, low_open=True)
        _check_choice("penalty", self.penalty, PENALTIES)
        _check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _check_range("max_iter", self.max_iter, low=1)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LogisticParams:
        """From a mapping of parameter name to value (e.g. a train_a run's ``run.data.params``)."""
        return _from_params(cls, params)


@dataclass(frozen=True)
class LightGBMParams:
    """Hyperparameters of policy B (types only; defaults live in MLproject's train_b entry point)."""

    num_leaves: int
    learning_rate: float
    n_estimators: int
    min_child_samples: int
    feature_fraction: float
    bagging_fraction: float
    lambda_l2: float
    early_stopping_rounds: int
    monotone: str
    seed: int

    def __post_init__(self) -> None:
        _check_choice("monotone", self.monotone, MONOTONE_CHOICES)
        _check_range("num_leaves", self.num_leaves, low=2, high=131072)
        _check_range("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_range("n_estimators", self.n_estimators, low=1)
        _check_range("min_child_samples", self.min_child_samples, low=1)
        _check_range("feature_fraction", self.feature_fraction, low=0.0, high=1.0, low_open=True)
        _check_range("bagging_fraction", self.bagging_fraction, low=0.0, high=1.0, low_open=True)
        _check_range("lambda_l2", self.lambda_l2, low=0.0)
        _check_range("early_stopping_rounds", self.early_stopping_rounds, low=0)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LightGBMParams:
        """From a mapping of parameter name to value (e.g. a train_b run's ``run.data.params``)."""
        return _from_params(cls, params)

    def booster_params(self) -> dict[str, Any]:
        """The ``lgb.train`` parameter dict: binary objective, reproducible, quiet."""
        constraints = (
            {"monotone_constraints": list(schema.MONOTONE_CONSTRAINTS)} if self.monotone == "schema" else {}
        )
        return {
            "objective": "binary",
            # AUC first: early stopping watches the metric the A/B comparison leads with.
            "metric": ["auc", "binary_logloss"],
            "first_metric_only": True,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            # bagging_fraction < 1 does nothing unless rows are re-drawn every k iterations.
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "lambda_l2": self.lambda_l2,
            # On real ML-100K the constraints lift validation AUC on every split mode (random 0.8051 -> 0.8061,
            # autoint 0.8768 -> 0.8779) and test AUC on six of six random-split seeds (benchmarks/quality.py).
            **constraints,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": LIGHTGBM_NUM_THREADS,
            "verbosity": -1,
        }


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """The 0/1 label column as an int array, checked (a policy trained on anything else is meaningless)."""
    if schema.LABEL not in frame.columns:
        raise ValueError(f"frame has no {schema.LABEL!r} column; columns are {list(frame.columns)}")
    labels = frame[schema.LABEL].to_numpy(dtype=np.int64)
    bad = sorted(set(np.unique(labels)) - {0, 1})
    if bad:
        raise ValueError(f"{schema.LABEL} must be 0/1, found values {bad[:5]}")
    return labels


# ----------------------------------------------------------------------------------------------- policy A


def build_logistic_pipeline(params: LogisticParams) -> Pipeline:
    """Unfitted policy A: preprocessing of the raw feature frame + logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline(
        [
            # release_year is NaN when unknown; the indicator lets the model price "unknown" separately.
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, list(schema.NUMERIC_FEATURES)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(schema.CATEGORICAL_FEATURES)),
            ("genre", "passthrough", list(schema.GENRE_COLUMNS)),
        ],
        verbose_feature_names_out=True,
    )
    # scikit-learn 1.8 replaced `penalty` by l1_ratio (and C=inf for no penalty); lbfgs is the fast solver for
    # L2, saga the one that supports L1.
    if params.penalty == "l1":
        regulariser = {"C": params.C, "l1_ratio": 1.0, "solver": "saga"}
    elif params.penalty == "none":
        regulariser = {"C": np.inf, "l1_ratio": 0.0, "solver": "lbfgs"}
    else:
        regulariser = {"C": params.C, "l1_ratio": 0.0, "solver": "lbfgs"}
    classifier = LogisticRegression(
        **regulariser,
        class_weight=None if params.class_weight == "none" else params.class_weight,
        max_iter=params.max_iter,
        random_state=params.seed,
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def fit_logistic(train: pd.DataFrame, *, params: LogisticParams) -> Pipeline:
    """Fit policy A on a training frame holding FEATURE_COLUMNS and label."""
    pipeline = build_logistic_pipeline(params)
    return pipeline.fit(schema.to_feature_frame(train), labels_of(train))


def predict_logistic(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Probability of a positive, 1-D."""
    return pipeline.predict_proba(schema.to_feature_frame(frame))[:, 1]


def coefficient_table(pipeline: Pipeline) -> pd.DataFrame:
    """Policy A's coefficients on the transformed (scaled / one-hot) features, largest magnitude first."""
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    classifier = pipeline.named_steps["classifier"]
    table = pd.DataFrame({"feature": names, "coefficient": classifier.coef_[0]})
    table["abs_coefficient"] = table["coefficient"].abs()
    table = table.sort_values("abs_coefficient", ascending=False, kind="stable").reset_index(drop=True)
    intercept = pd.DataFrame(
        {"feature": ["intercept"], "coefficient": [classifier.intercept_[0]], "abs_coefficient": [np.nan]}
    )
    return pd.concat([table, intercept], ignore_index=True)


# ----------------------------------------------------------------------------------------------- policy B


@dataclass(frozen=True)
class LightGBMFit:
    """A trained policy B with its training history."""

    booster: lgb.Booster
    best_iteration: int
    # One row per boosting iteration: iteration, train_auc, train_logloss, val_auc, val_logloss (when val given).
    curve: pd.DataFrame


def _dataset(frame: pd.DataFrame, *, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    import lightgbm as lgb

    return lgb.Dataset(
        schema.to_feature_frame(frame),
        label=labels_of(frame),
        categorical_feature=list(schema.CATEGORICAL_FEATURES),
        reference=reference,
        free_raw_data=False,
    )


def fit_lightgbm(
    train: pd.DataFrame, val: pd.DataFrame | None, *, params: LightGBMParams, record_train_curve: bool = True
) -> LightGBMFit:
    """Fit policy B; with ``val`` (and early_stopping_rounds > 0) stop when validation AUC stops improving.

    Without ``val`` it trains exactly ``n_estimators`` rounds. ``record_train_curve`` scores the training set
    every round for the train_b step's learning-curve plot; refits that only need the model (cross-validation,
    benchmarks) switch it off, since that scoring is a large share of the fit on small data.
    """
    import lightgbm as lgb

    train_set = _dataset(train)
    valid_sets, valid_names = ([train_set], ["train"]) if record_train_curve else ([], [])
    if val is not None:
        valid_sets.append(_dataset(val, reference=train_set))
        valid_names.append("val")
    history: dict[str, dict[str, list[float]]] = {}
    callbacks = [lgb.record_evaluation(history)]
    if val is not None and params.early_stopping_rounds > 0:
        callbacks.append(lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False))
    booster = lgb.train(
        params.booster_params(),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=valid_sets,
        valid_names=valid_names,
        callbacks=callbacks,
    )
    curve = pd.DataFrame(
        {
            f"{split}_{'logloss' if metric == 'binary_logloss' else metric}": values
            for split, metrics in history.items()
            for metric, values in metrics.items()
        }
    )
    curve.insert(0, "iteration", np.arange(1, len(curve) + 1))
    # best_iteration is 0 when early stopping did not run; then every tree is used.
    best_iteration = booster.best_iteration or booster.current_iteration()
    return LightGBMFit(booster=booster, best_iteration=int(best_iteration), curve=curve)


def predict_lightgbm(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    """Probability of a positive, 1-D (uses the best iteration when early stopping set one)."""
    return np.asarray(booster.predict(schema.to_feature_frame(frame)), dtype=np.float64)


def importance_table(booster: lgb.Booster) -> pd.DataFrame:
    """Policy B's feature importance by total gain (and split count), largest first."""
    table = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance(importance_type="gain"),
            "splits": booster.feature_importance(importance_type="split"),
        }
    )
    return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- both


@dataclass(frozen=True)
class FittedPolicy:
    """A fitted policy of either kind behind one interface (for cross-validation and benchmarks)."""

    policy: PolicyName
    model: Pipeline | lgb.Booster

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of a positive, 1-D."""
        import lightgbm as lgb

        if isinstance(self.model, lgb.Booster):
            return predict_lightgbm(self.model, frame)
        return predict_logistic(self.model, frame)


def fit_policy(
    policy: PolicyName, train: pd.DataFrame, val: pd.DataFrame | None, *, params: Mapping[str, Any]
) -> FittedPolicy:
    """Fit policy "A" or "B" from a parameter mapping such as a training run's logged params.

    The arm's model flavour (``ab_router.arms``) picks the fitter; the logistic regression ignores ``val``.
    Extra keys in ``params`` (``prepare_run``, ``dataset``, ...) are ignored.
    """
    _check_choice("policy", policy, ARMS)
    flavor = policy_arm(policy).flavor
    if flavor == "sklearn":
        return FittedPolicy(policy, fit_logistic(train, params=LogisticParams.from_params(params)))
    if flavor == "lightgbm":
        fit = fit_lightgbm(train, val, params=LightGBMParams.from_params(params), record_train_curve=False)
        return FittedPolicy(policy, fit.booster)
    raise ValueError(
        f"policy {policy} has model flavour {flavor!r} (ab_router/arms.py); fit_policy fits 'sklearn' (logistic "
        "regression) and 'lightgbm': add its fitter here"
    )


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC, PR-AUC (average precision), logloss and Brier score of probability scores against 0/1 labels."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same shape, got {labels.shape} and {scores.shape}")
    if len(np.unique(labels)) < 2:
        raise ValueError("metrics need both classes among the labels, got only one")
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "logloss": float(log_loss(labels, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
    }
