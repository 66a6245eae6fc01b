"""Fixtures of the registry/router area.

- ``handmade_runs``: a prepare run and train_a / train_b runs built here from tiny synthetic tables and tiny
  models, logged the way the real steps log them (artifact layout, tags). Registry tests use it with their own
  store, so they do not depend on the training steps' speed or on other tests' registrations.
- ``registered_policies`` / ``router_run`` (session): the real `register` and `router` steps run in-process on the
  pipeline's session fixtures ``train_a_run`` / ``train_b_run``. Used by the serving and simulate tests.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ab_router.schema import LABEL, to_feature_frame
from abtest.config import FEATURE_DEFAULTS_FILE, ITEM_FEATURES_FILE, USER_FEATURES_FILE
from abtest.data.movielens import MovieLensTables
from abtest.features.build import FeatureTables, build_features
from abtest.tracking.tags import STEP as STEP_TAG
from steps.prepare import write_prepared
from tests.fixtures_features import synthetic_splits, synthetic_tables

# SimpleImputer keeps a numpy dtype, which skops (mlflow.sklearn's format in 3.17) refuses unless trusted.
SKOPS_TRUSTED = ["numpy.dtype"]
# Explicit requirements spare log_model its slow inference (a subprocess that loads the model).
REQUIREMENTS = ["mlflow", "scikit-learn", "lightgbm", "pandas", "numpy"]


@dataclass(frozen=True)
class HandmadeRuns:
    """Run ids of a hand-made prepare → train_a / train_b lineage, and the tables behind it."""

    prepare: str
    train_a: str
    train_b: str
    tables: FeatureTables


def fit_handmade_policies(tables: FeatureTables) -> tuple[object, lgb.Booster]:
    """Tiny stand-ins for policy A (imputed logistic regression) and policy B (a small LightGBM booster)."""
    train = tables.splits["train"]
    features, labels = to_feature_frame(train), train[LABEL].to_numpy()
    policy_a = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=500)).fit(
        features, labels
    )
    policy_b = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 7,
            "verbose": -1,
            "num_threads": 1,
            "seed": 0,
            "deterministic": True,
        },
        lgb.Dataset(features, labels),
        num_boost_round=15,
    )
    return policy_a, policy_b


@cache
def handmade_tables(seed: int = 0) -> tuple[FeatureTables, pd.DataFrame, pd.DataFrame]:
    """Feature tables of the features engineer's small synthetic MovieLens."""
    interactions, users, items = synthetic_tables(seed=seed)
    return build_features(synthetic_splits(interactions), users, items, seed=seed), users, items


@cache
def handmade_policies(seed: int = 0) -> tuple[object, lgb.Booster]:
    """The hand-made policies of ``handmade_tables(seed)``, fitted once per session."""
    return fit_handmade_policies(handmade_tables(seed)[0])


def write_feature_tables(tables: FeatureTables, directory: Path) -> Path:
    """The ``features/`` artifact layout of a prepare run."""
    directory.mkdir(parents=True, exist_ok=True)
    tables.user_features.to_parquet(directory / USER_FEATURES_FILE)
    tables.item_features.to_parquet(directory / ITEM_FEATURES_FILE)
    (directory / FEATURE_DEFAULTS_FILE).write_text(json.dumps(tables.defaults))
    return directory


def log_handmade_prepare(seed: int = 0) -> str:
    """A prepare run with the real artifact layout (processed/, features/) and dataset inputs; returns its id."""
    tables, users, items = handmade_tables(seed)
    interactions = pd.concat(list(tables.splits.values()), ignore_index=True)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="handmade-prepare") as prepare:
        mlflow.set_tag(STEP_TAG, "prepare")
        for name, frame in tables.splits.items():
            mlflow.log_input(mlflow.data.from_pandas(frame, name=name), context=name)
        # The real step's writer, so this stand-in cannot drift from the artifact layout prepare produces.
        out = write_prepared(
            Path(tmp, "out"),
            tables=MovieLensTables("ml-100k", interactions, users, items),
            features=tables,
            profile={},
        )
        mlflow.log_artifacts(str(out))
    return prepare.info.run_id


def log_handmade_policy(step: str, prepare_run: str, *, seed: int = 0) -> str:
    """A train_a / train_b run logging its hand-made policy as the real steps do (tags, model); returns its id."""
    policy_a, policy_b = handmade_policies(seed)
    with mlflow.start_run(run_name=f"handmade-{step}") as run:
        mlflow.set_tags({STEP_TAG: step, "abtest.prepare_run": prepare_run})
        mlflow.log_params({"prepare_run": prepare_run})
        mlflow.log_metrics({"val_auc": 0.7 if step == "train_a" else 0.75, "val_logloss": 0.6})
        if step == "train_a":
            info = mlflow.sklearn.log_model(
                policy_a,
                name="model",
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=SKOPS_TRUSTED,
                pip_requirements=REQUIREMENTS,
            )
        else:
            info = mlflow.lightgbm.log_model(policy_b, name="model", pip_requirements=REQUIREMENTS)
        mlflow.set_tag("abtest.model_uri", info.model_uri)
    return run.info.run_id


def log_handmade_runs(seed: int = 0) -> HandmadeRuns:
    """Log a prepare run and two training runs in the current tracking store, as the real steps would."""
    prepare = log_handmade_prepare(seed)
    return HandmadeRuns(
        prepare=prepare,
        train_a=log_handmade_policy("train_a", prepare, seed=seed),
        train_b=log_handmade_policy("train_b", prepare, seed=seed),
        tables=handmade_tables(seed)[0],
    )


@pytest.fixture
def handmade_runs(fresh_tracking: str) -> HandmadeRuns:
    """Hand-made prepare/train runs in a store of the test's own."""
    return log_handmade_runs()


@pytest.fixture(scope="session")
def registered_policies(train_a_run: str, train_b_run: str) -> dict[str, str]:
    """The real `register` step on the session's training runs: {"run": id, "A": version, "B": version}."""
    from steps import register

    run_id = register.main(["--train_a_run", train_a_run, "--train_b_run", train_b_run])
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    return {"run": run_id, "A": tags["abtest.policy_a_version"], "B": tags["abtest.policy_b_version"]}


@pytest.fixture(scope="session")
def router_run(registered_policies: dict[str, str]) -> str:
    """Run id of the real `router` step (default split 0.5, hash) on ``registered_policies``."""
    from steps import router

    return router.main([])


def random_pairs(tables: FeatureTables, n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` (user_id, item_id) rows drawn from the known ids, with some unseen ids mixed in."""
    rng = np.random.default_rng(seed)
    users = np.append(tables.user_features["user_id"].to_numpy(), [10_000_001])
    items = np.append(tables.item_features["item_id"].to_numpy(), [20_000_001])
    return pd.DataFrame({"user_id": rng.choice(users, n), "item_id": rng.choice(items, n)}, dtype="int64")
