"""Paths and names shared by the steps. Parameter defaults are not here: MLproject holds each one, once."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"
# Downloads (GroupLens zips, the recbole wheel) are cached here, outside the repo, so a fresh clone and
# every virtualenv reuse them. Override with ABTEST_CACHE_DIR.
CACHE_DIR = Path(os.environ.get("ABTEST_CACHE_DIR", Path.home() / ".cache" / "abtest-mlflow-movielens"))

DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m")

# Tag every step run carries, so lineage look-ups work whether or not the run came from `mlflow run`.
STEP_TAG = "abtest.step"

# Artifact layout of a `prepare` run (read back by steps.lineage.load_prepared).
PROCESSED_DIR = "processed"  # train/val/test.parquet: ids, rating, timestamp, label, FEATURE_COLUMNS
SPLITS: tuple[str, ...] = ("train", "val", "test")
USERS_FILE = "users.parquet"  # normalised user table (processed/)
ITEMS_FILE = "items.parquet"  # normalised item table (processed/)
FEATURE_TABLES_DIR = "features"  # user_features.parquet, item_features.parquet, defaults.json
USER_FEATURES_FILE = "user_features.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
FEATURE_DEFAULTS_FILE = "defaults.json"

# The `prepare` parameters that identify a dataset; trainers run without a prepare run id look for the latest
# FINISHED prepare run whose params match these.
DATA_PARAMS: tuple[str, ...] = (
    "dataset",
    "split",
    "positive_threshold",
    "val_frac",
    "test_frac",
    "seed",
)
