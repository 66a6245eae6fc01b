"""Entry point ``prepare``: raw MovieLens -> validated, labelled, split and featurised tables in one MLflow run.

Inputs (MLproject parameters): dataset, source (auto | local | grouplens | pypi), data_path, split (temporal |
random | autoint), positive_threshold, val_frac, test_frac, seed.

Outputs (artifacts of the run, read back by ``abtest.tracking.lineage.load_prepared(run_id)``):
- ``processed/{train,val,test}.parquet``: interaction columns + label + FEATURE_COLUMNS;
- ``processed/users.parquet``, ``processed/items.parquet``: the normalised user and item tables;
- ``features/user_features.parquet``, ``features/item_features.parquet``, ``features/defaults.json``: the lookup
  tables the router serves with;
- ``profile.json`` (rows, users, items, positive rate, time range, cold users/items per split; also logged as
  ``<split>_<stat>`` metrics) and ``acquisition.json`` (every source tried);
- one ``mlflow.log_input`` per split (context train / val / test) with the dataset's digest;
- params: the step's parameters plus ``source_used`` and ``raw_sha256`` (the zip or wheel actually read).

Returns the run id.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import pandas as pd

from ab_router.schema import LABEL
from abtest.config import DATASETS
from abtest.data.sources import SOURCES, AcquiredData, acquire
from abtest.data.split import SPLIT_MODES, split_interactions, validate_fractions
from abtest.features.build import build_features
from abtest.features.prepared import INTERACTION_LOG_COLUMNS, data_profile, profile_metrics, write_prepared
from abtest.tracking import tags
from abtest.tracking.lineage import records_failure, step_run
from steps.cli import check_seed, configure_logging, parse_params

log = logging.getLogger(__name__)

ACQUISITION_FILE = "acquisition.json"


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """Reject bad parameters before a run is opened, naming the rule, the value and what is allowed."""
    for name, value, allowed in (
        ("dataset", params.dataset, DATASETS),
        ("source", params.source, SOURCES),
        ("split", params.split, SPLIT_MODES),
    ):
        if value not in allowed:
            raise ValueError(f"parameter {name} must be one of {list(allowed)}, got {value!r}")
    if not 1 <= params.positive_threshold <= 5:
        raise ValueError(f"parameter positive_threshold must be a rating 1..5, got {params.positive_threshold}")
    validate_fractions(val_frac=params.val_frac, test_frac=params.test_frac)
    check_seed(params.seed)
    if params.data_path and params.source not in ("auto", "local"):
        raise ValueError(
            f"parameter data_path is read only with source=local or auto, got source={params.source!r} and "
            f"data_path={params.data_path!r}"
        )


def _log_params(params: Mapping[str, object], acquired: AcquiredData) -> None:
    # `mlflow run` has already logged the parameters as typed on its command line; logging a differently
    # written value ("0.10" vs "0.1") again would be rejected, so only missing ones are added.
    active = mlflow.active_run()
    present = mlflow.get_run(active.info.run_id).data.params if active else {}
    values = {name: str(value) for name, value in params.items()}
    values.update(source_used=acquired.source, raw_sha256=acquired.sha256)
    mlflow.log_params({name: value for name, value in values.items() if name not in present})


def _log_inputs(splits: Mapping[str, pd.DataFrame], *, params, acquired: AcquiredData) -> None:
    for name, frame in splits.items():
        with warnings.catch_warnings():
            # MLflow 3.17 registers its local-file source class twice and then warns that a path is ambiguous;
            # and it hints that int columns cannot hold NaN, which these never do.
            warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
            warnings.filterwarnings(
                "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
            )
            dataset = mlflow.data.from_pandas(
                frame.loc[:, INTERACTION_LOG_COLUMNS],
                source=acquired.location,
                name=f"{params.dataset}-{params.split}-{name}",
                targets=LABEL,
            )
            mlflow.log_input(dataset, context=name)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Run the prepare step; returns the MLflow run id."""
    params = parse_params("prepare", argv, description=__doc__.split("\n\n")[0])
    configure_logging()
    check_params(params)
    with step_run("prepare") as run:
        acquired = acquire(params.dataset, source=params.source, data_path=params.data_path)
        _log_params(vars(params), acquired)
        mlflow.set_tags({tags.DATA_SOURCE: acquired.source, tags.RAW_LOCATION: acquired.location})
        tables = acquired.tables
        splits = split_interactions(
            tables.interactions,
            mode=params.split,
            positive_threshold=params.positive_threshold,
            val_frac=params.val_frac,
            test_frac=params.test_frac,
            seed=params.seed,
        )
        features = build_features(splits, tables.users, tables.items, seed=params.seed)
        profile = data_profile(tables, splits)
        with tempfile.TemporaryDirectory(prefix="abtest-prepare-") as tmp:
            out_dir = write_prepared(Path(tmp) / "prepared", tables=tables, features=features, profile=profile)
            mlflow.log_artifacts(str(out_dir))
        mlflow.log_dict(
            {
                "source_used": acquired.source,
                "location": acquired.location,
                "sha256": acquired.sha256,
                "attempts": [vars(a) for a in acquired.attempts],
            },
            ACQUISITION_FILE,
        )
        _log_inputs(splits, params=params, acquired=acquired)
        mlflow.log_metrics(profile_metrics(profile))
        sizes = ", ".join(
            f"{name} {stats['rows']} rows ({stats['positive_rate']:.3f} positive)"
            for name, stats in profile["splits"].items()
        )
        log.info(
            "prepared %s from %s (%d ratings, %d users, %d items), split %s: %s; run %s",
            params.dataset,
            acquired.source,
            profile["dataset"]["ratings"],
            profile["dataset"]["users"],
            profile["dataset"]["items"],
            params.split,
            sizes,
            run.info.run_id,
        )
        return run.info.run_id


if __name__ == "__main__":
    main()
