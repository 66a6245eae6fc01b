"""Step `score`: batch scoring through a registered router, for offline replays and backfills of any size.

Inputs: the router (``router_uri``, default ``models:/movielens_ctr_router@router``; resolved to its version);
the pairs (``input``: a Parquet file or folder, or CSV, with ``user_id``, ``item_id`` (integers) and optionally
``request_id`` (string); "" = the test pairs of the prepare run the router version records, its
``processed/test.parquet``); the engine (``engine=local``: in this process, ``chunk_rows`` pairs per ``predict``;
``engine=spark``: ``mlflow.pyfunc.spark_udf`` on a session from ``spark_master`` / ``spark_conf``).
Outputs: the router's own ``predict`` answer for every pair (``ab_router.schema.ROUTER_OUTPUT_COLUMNS``, in that
order) as a folder of Parquet part files: this run's ``scored/`` artifacts (``output`` "") or the new folder
``output`` (an existing non-empty one is refused); metrics ``rows``, ``rows_per_s``, ``rows_<arm>``; tags
``abtest.router_uri`` / ``abtest.router_version`` (the version scored with), ``abtest.prepare_run`` (the default
input's); the input as the run's dataset (context ``scoring``: its location and a digest of its files).
No decisions are recorded: ``ABTEST_DECISION_LOG`` is unset while scoring (``abtest.scoring.runner``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema

from ab_router.records import REQUEST_ID
from abtest.config import PROCESSED_DIR
from abtest.experiment.router_client import RouterHandle, resolve_router
from abtest.scoring import ENGINES, PairsInput, open_pairs, score_pairs
from abtest.scoring.output import check_output_free
from abtest.spark import check_spark_available, parse_spark_conf
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError, records_failure, step_run
from abtest.tracking.params import log_resolved_params
from steps.cli import configure_logging, parse_params

log = logging.getLogger(__name__)

SCORED_DIR = "scored"  # the artifact folder of the scored rows when no output folder is given
TEST_PAIRS = f"{PROCESSED_DIR}/test.parquet"  # the default input, in the router's prepare run


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """What needs neither the store nor the router: engine, chunk size, Spark settings, input and output paths.

    ``pipeline`` is not used: score is not one of main's steps.
    """
    if params.engine not in ENGINES:
        raise ValueError(f"parameter engine must be one of {list(ENGINES)}, got {params.engine!r}")
    if params.chunk_rows < 1:
        raise ValueError(f"parameter chunk_rows must be an integer >= 1, got {params.chunk_rows}")
    parse_spark_conf(params.spark_conf)
    if params.engine == "spark":
        check_spark_available(params.spark_master)
    if params.input and not Path(params.input).exists():
        raise ValueError(
            f'parameter input must be a Parquet or CSV file, a folder of them or "" (the router\'s prepare run '
            f"test pairs), got {params.input!r}: no such file or folder"
        )
    if params.output:
        check_output_free(Path(params.output))


def default_input(handle: RouterHandle, directory: Path) -> tuple[Path, str]:
    """The test pairs of the router version's prepare run, downloaded under ``directory``, and that run's id."""
    if not handle.prepare_run:
        raise LineageError(
            f"router {handle.model_uri} records no prepare run (tag {tags.PREPARE_RUN}); pass -P input=<pairs>"
        )
    local = mlflow.artifacts.download_artifacts(
        run_id=handle.prepare_run, artifact_path=TEST_PAIRS, dst_path=str(directory)
    )
    return Path(local), handle.prepare_run


def input_dataset(pairs: PairsInput, *, source_uri: str) -> MetaDataset:
    """The input as an MLflow dataset: where it is (a file or artifact URI), a digest of its files and its columns
    (no data is read)."""
    types = {REQUEST_ID: DataType.string}
    schema = Schema([ColSpec(types.get(name, DataType.long), name) for name in pairs.columns])
    with warnings.catch_warnings():
        # MLflow registers its local artifact source twice and says so on every resolution of a file URI.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple")
        source = resolve_dataset_source(source_uri)
    return MetaDataset(source, name=Path(pairs.location).name, digest=pairs.digest(), schema=schema)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Score the pairs through the router and log the result; returns the run id."""
    params = parse_params("score", argv, description=__doc__)
    configure_logging()
    check_params(params)
    with step_run("score") as run, tempfile.TemporaryDirectory() as tmp:
        handle = resolve_router(params.router_uri, router_run="")
        _, _, version = handle.model_uri.removeprefix("models:/").rpartition("/")
        if params.input:
            location, prepare_run = Path(params.input), ""
            source_uri = location.absolute().as_uri()
        else:
            location, prepare_run = default_input(handle, Path(tmp) / "input")
            source_uri = f"{mlflow.get_run(prepare_run).info.artifact_uri}/{TEST_PAIRS}"
        pairs = open_pairs(location)
        log_resolved_params({**vars(params), "input": params.input or f"runs:/{prepare_run}/{TEST_PAIRS}"})
        mlflow.set_tags(
            {tags.ROUTER_URI: handle.model_uri, tags.ROUTER_VERSION: version, tags.PREPARE_RUN: prepare_run}
        )
        mlflow.log_input(input_dataset(pairs, source_uri=source_uri), context="scoring")
        destination = Path(params.output) if params.output else Path(tmp) / SCORED_DIR
        result = score_pairs(
            handle.model_uri,
            pairs,
            destination,
            engine=params.engine,
            chunk_rows=params.chunk_rows,
            spark_master=params.spark_master,
            spark_conf=parse_spark_conf(params.spark_conf),
        )
        if not params.output:
            mlflow.log_artifacts(str(destination), SCORED_DIR)
        mlflow.log_metrics(result.metrics())
    where = params.output or f"runs:/{run.info.run_id}/{SCORED_DIR}"
    print(
        f"score (engine={params.engine}): {result.rows} pairs through {handle.model_uri} -> {where} "
        f"({result.rows_per_s:,.0f} rows/s)"
    )
    return run.info.run_id


if __name__ == "__main__":
    main()
