"""Trained policies for tests: `train_a_run` and `train_b_run` (session), and a synthetic prepare run maker.

`train_a_run` / `train_b_run` call the steps' ``main()`` in-process on the data engineer's ``prepared_run``
session fixture (tests/fixtures_data.py) and return the training run id; the logged model is at the run's tag
``abtest.model_uri``. Until ``prepared_run`` exists they fall back to :func:`log_synthetic_prepare_run`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pytest

from abtest.data.movielens import MovieLensTables
from abtest.features.build import build_features
from abtest.tracking.tags import STEP as STEP_TAG
from steps.prepare import write_prepared
from tests.fixtures_features import synthetic_splits, synthetic_tables

# Small enough for seconds per fit, large enough that LightGBM early-stops on a real signal.
SYNTHETIC_RATINGS = 3000
# Bounds the boosting rounds in fixtures (early stopping usually ends far sooner); keeps the suite fast.
FIXTURE_N_ESTIMATORS = "300"


def log_synthetic_prepare_run(
    *, dataset: str = "ml-100k", split: str = "temporal", seed: int = 0, n_ratings: int = SYNTHETIC_RATINGS
) -> str:
    """Log a FINISHED run laid out like a real `prepare` run (tag, params, artifacts) on synthetic data."""
    interactions, users, items = synthetic_tables(n_users=120, n_items=80, n_ratings=n_ratings, seed=seed)
    tables = build_features(synthetic_splits(interactions), users, items, seed=seed)
    with mlflow.start_run(run_name=f"synthetic-prepare-{split}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tag(STEP_TAG, "prepare")
        mlflow.log_params(
            {
                "dataset": dataset,
                "split": split,
                "positive_threshold": 4,
                "val_frac": 0.15,
                "test_frac": 0.15,
                "seed": seed,
            }
        )
        # The real step's writer, so this stand-in cannot drift from the artifact layout prepare produces.
        out = write_prepared(
            Path(tmp, "out"),
            tables=MovieLensTables(dataset, interactions, users, items),
            features=tables,
            profile={},
        )
        mlflow.log_artifacts(str(out))
    return run.info.run_id


def _prepare_run_id(request: pytest.FixtureRequest) -> str:
    """The data engineer's `prepared_run` (a run id or an object with .run_id), else a synthetic prepare run."""
    try:
        prepared = request.getfixturevalue("prepared_run")
    except pytest.FixtureLookupError:
        return request.getfixturevalue("synthetic_prepare_run")
    return prepared if isinstance(prepared, str) else prepared.run_id


@pytest.fixture(scope="session")
def synthetic_prepare_run(session_tracking: str) -> str:
    """A synthetic prepare run in the session store."""
    return log_synthetic_prepare_run()


@pytest.fixture(scope="session")
def train_a_run(request: pytest.FixtureRequest, session_tracking: str) -> str:
    """Run id of an in-process `train_a` (default parameters) on the session's prepare run."""
    from steps import train_a

    return train_a.main(["--prepare_run", _prepare_run_id(request)])


@pytest.fixture(scope="session")
def train_b_run(request: pytest.FixtureRequest, session_tracking: str) -> str:
    """Run id of an in-process `train_b` (default parameters, at most 300 rounds) on the session's prepare run."""
    from steps import train_b

    return train_b.main(["--prepare_run", _prepare_run_id(request), "--n_estimators", FIXTURE_N_ESTIMATORS])
