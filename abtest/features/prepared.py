"""What `prepare` writes: the split, labelled interactions and feature tables, written all at once or not at all,
and the data profile (sizes, label balance, cold-start shares) logged beside them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ab_router.schema import ITEM_ID, LABEL, RATING, TIMESTAMP, USER_ID
from abtest.config import (
    FEATURE_DEFAULTS_FILE,
    FEATURE_TABLES_DIR,
    ITEM_FEATURES_FILE,
    ITEMS_FILE,
    PROCESSED_DIR,
    USER_FEATURES_FILE,
    USERS_FILE,
)
from abtest.data.movielens import MovieLensTables
from abtest.data.split import split_profile
from abtest.features.build import FeatureTables

PROFILE_FILE = "profile.json"


INTERACTION_LOG_COLUMNS = [USER_ID, ITEM_ID, RATING, TIMESTAMP, LABEL]


def write_prepared(
    out_dir: str | Path, *, tables: MovieLensTables, features: FeatureTables, profile: Mapping[str, object]
) -> Path:
    """Write every output table under ``out_dir`` (which must not exist yet) atomically; returns ``out_dir``.

    Files go to a staging folder beside ``out_dir`` that is renamed into place only when all were written, so a
    failure never leaves a half-written processed-data folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; write_prepared makes a fresh output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    try:
        processed = staging / PROCESSED_DIR
        feature_dir = staging / FEATURE_TABLES_DIR
        processed.mkdir()
        feature_dir.mkdir()
        for name, frame in features.splits.items():
            frame.reset_index(drop=True).to_parquet(processed / f"{name}.parquet", index=False)
        tables.users.to_parquet(processed / USERS_FILE, index=False)
        tables.items.to_parquet(processed / ITEMS_FILE, index=False)
        features.user_features.to_parquet(feature_dir / USER_FEATURES_FILE, index=False)
        features.item_features.to_parquet(feature_dir / ITEM_FEATURES_FILE, index=False)
        (feature_dir / FEATURE_DEFAULTS_FILE).write_text(json.dumps(features.defaults, indent=2, sort_keys=True))
        (staging / PROFILE_FILE).write_text(json.dumps(profile, indent=2, sort_keys=True))
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def data_profile(tables: MovieLensTables, splits: Mapping[str, pd.DataFrame]) -> dict[str, object]:
    """The dataset's size and each split's profile (see abtest.data.split.split_profile)."""
    ratings = tables.interactions
    return {
        "dataset": {
            "ratings": len(ratings),
            "users": len(tables.users),
            "items": len(tables.items),
            "rated_items": int(ratings[ITEM_ID].nunique()),
            "time_min": int(ratings[TIMESTAMP].min()),
            "time_max": int(ratings[TIMESTAMP].max()),
        },
        "splits": split_profile(splits),
    }


def profile_metrics(profile: Mapping[str, object]) -> dict[str, float]:
    """The data profile as flat run metrics: ``data_<key>`` for the dataset, ``<split>_<key>`` per split."""
    metrics = {f"data_{key}": float(value) for key, value in profile["dataset"].items()}
    for split, stats in profile["splits"].items():
        metrics.update({f"{split}_{key}": float(value) for key, value in stats.items()})
    return metrics
