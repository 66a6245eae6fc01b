"""Data fixtures for the whole suite: synthetic MovieLens zips in the original layouts and a real `prepare` run.

- ``synthetic_ml100k_zip``: ~300 users, 250 items, 20,000 ratings in the ML-100K layout (signal enough for
  models to beat chance clearly, seconds to prepare).
- ``synthetic_ml1m_zip``: a small ML-1M-layout zip (``::`` separators, age/occupation codes).
- ``prepared_run``: run id of an in-process ``steps.prepare.main`` on the ML-100K-layout zip with
  ``--source local --split random``, in the session tracking store; read it with
  ``abtest.tracking.lineage.load_prepared(prepared_run)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from abtest.data.synthetic import write_synthetic_zip

SMALL_ML100K = {"n_users": 300, "n_items": 250, "n_ratings": 20_000, "seed": 7}
SMALL_ML1M = {"n_users": 120, "n_items": 90, "n_ratings": 4_000, "seed": 11}


@pytest.fixture(scope="session")
def synthetic_ml100k_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic ``ml-100k.zip`` (folder ml-100k/ with u.data, u.user, u.item, ...)."""
    return write_synthetic_zip(tmp_path_factory.mktemp("ml100k") / "ml-100k.zip", layout="ml-100k", **SMALL_ML100K)


@pytest.fixture(scope="session")
def synthetic_ml1m_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic ``ml-1m.zip`` (folder ml-1m/ with ratings.dat, users.dat, movies.dat, README)."""
    return write_synthetic_zip(tmp_path_factory.mktemp("ml1m") / "ml-1m.zip", layout="ml-1m", **SMALL_ML1M)


@pytest.fixture(scope="session")
def prepared_run(synthetic_ml100k_zip: Path, session_tracking: str) -> str:
    """Run id of a FINISHED `prepare` run on ``synthetic_ml100k_zip`` (random split) in the session store."""
    from steps.prepare import main

    return main(["--source", "local", "--data_path", str(synthetic_ml100k_zip), "--split", "random"])
