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

# Artifact layout of a `prepare` run (read back by abtest.tracking.lineage.load_prepared).
PROCESSED_DIR = "processed"  # train/val/test.parquet: ids, rating, timestamp, label, FEATURE_COLUMNS
SPLITS: tuple[str, ...] = ("train", "val", "test")
USERS_FILE = "users.parquet"  # normalised user table (processed/)
ITEMS_FILE = "items.parquet"  # normalised item table (processed/)
FEATURE_TABLES_DIR = "features"  # user_features.parquet, item_features.parquet, defaults.json
USER_FEATURES_FILE = "user_features.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
FEATURE_DEFAULTS_FILE = "defaults.json"
