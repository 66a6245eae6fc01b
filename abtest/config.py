"""Paths and names shared by the steps. Parameter defaults are not here: MLproject holds each one, once."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"


def project_file(name: str) -> Path:
    """A file of the project checkout (``MLproject``, ``requirements.txt``), or an error saying where to run from.

    The entry points are an MLflow Project: they read MLproject and the pins beside this package. An installed
    wheel (``pip install .``) has the library but not the project, so a step started from it stops here with
    the fix instead of a bare FileNotFoundError deep in a step.
    """
    path = PROJECT_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} not found at {path}: the entry points run from the project's checkout, not from an "
            "installed wheel; clone the repository and run `pip install -e .` there, or `mlflow run <path or git "
            "URL> -e <entry point>`"
        )
    return path


# Downloads (GroupLens zips, the recbole wheel) are cached here, outside the repo, so a fresh clone and
# every virtualenv reuse them. Override with ABTEST_CACHE_DIR.
CACHE_DIR = Path(os.environ.get("ABTEST_CACHE_DIR", Path.home() / ".cache" / "abtest-mlflow-movielens"))

DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m")

# Artifact layout of a `prepare` run (read back by abtest.tracking.lineage.load_prepared).
PROCESSED_DIR = "processed"  # train/val/test.parquet: ids, rating, timestamp, label, FEATURE_COLUMNS
SPLITS: tuple[str, ...] = ("train", "val", "test")
USERS_FILE = "users.parquet"  # normalised user table (processed/)
ITEMS_FILE = "items.parquet"  # normalised item table (processed/)
FEATURE_TABLES_DIR = "features"  # user_features.parquet, item_features.parquet, defaults.json
USER_FEATURES_FILE = "user_features.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
FEATURE_DEFAULTS_FILE = "defaults.json"
