"""Both engines on the session's registered router (tests/fixtures/router.py ``router_run``): the rows written
are exactly the router's own ``predict`` on the same pairs, and no decision is recorded while scoring."""

from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ab_router.records import DECISION_LOG_ENV
from abtest.experiment.router_client import resolve_router
from abtest.scoring import OUTPUT_SCHEMA, open_pairs, score_pairs
from abtest.scoring.spark import result_type
from abtest.tracking.lineage import load_prepared

ROUTER_URI = "models:/movielens_ctr_router@router"
N_PAIRS = 2_500


@pytest.fixture(scope="module")
def router_version_uri(router_run: str) -> str:
    """The session router's version URI (``models:/movielens_ctr_router/<n>``)."""
    return resolve_router(ROUTER_URI, router_run="").model_uri


@pytest.fixture(scope="module")
def loaded_router(router_version_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """The router loaded in this process without a decision log: the reference every engine must equal."""
    before = os.environ.pop(DECISION_LOG_ENV, None)
    try:
        return mlflow.pyfunc.load_model(router_version_uri)
    finally:
        if before is not None:
            os.environ[DECISION_LOG_ENV] = before


@pytest.fixture(scope="module")
def pairs_frame(router_version_uri: str) -> pd.DataFrame:
    """Known (user, item) ids of the router's prepare run, some unknown ones (cold), a request id per row."""
    prepare_run = resolve_router(router_version_uri, router_run="").prepare_run
    test = load_prepared(prepare_run).test
    rng = np.random.default_rng(7)
    users = np.append(test["user_id"].unique(), [99_999_991])
    items = np.append(test["item_id"].unique(), [99_999_992])
    return pd.DataFrame(
        {
            "user_id": rng.choice(users, N_PAIRS).astype(np.int64),
            "item_id": rng.choice(items, N_PAIRS).astype(np.int64),
            "request_id": [f"req-{i}" for i in range(N_PAIRS)],
        }
    )


def _expected(loaded_router, frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(loaded_router.predict(frame), schema=OUTPUT_SCHEMA, preserve_index=False)


def _written(directory: Path) -> pa.Table:
    return pq.read_table(directory).replace_schema_metadata(None)


def _decision_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def test_local_engine_writes_exactly_the_routers_predict(
    tmp_path: Path, loaded_router, router_version_uri: str, pairs_frame: pd.DataFrame
) -> None:
    pairs_frame.to_parquet(tmp_path / "pairs.parquet", row_group_size=300)
    pairs = open_pairs(tmp_path / "pairs.parquet")
    result = score_pairs(router_version_uri, pairs, tmp_path / "scored", engine="local", chunk_rows=700)
    written = _written(tmp_path / "scored")
    assert written.schema == OUTPUT_SCHEMA
    assert written.equals(_expected(loaded_router, pairs_frame))  # same order, types and values
    policy = written.column("policy").to_pylist()
    assert result.rows == N_PAIRS and result.arm_rows == {"A": policy.count("A"), "B": policy.count("B")}
    assert result.metrics()["rows_A"] + result.metrics()["rows_B"] == N_PAIRS
    assert min(result.arm_rows.values()) > 0


def test_local_engine_without_request_ids_generates_one_per_chunk(
    tmp_path: Path, loaded_router, router_version_uri: str, pairs_frame: pd.DataFrame
) -> None:
    pairs_frame[["user_id", "item_id"]].to_csv(tmp_path / "pairs.csv", index=False)
    score_pairs(router_version_uri, open_pairs(tmp_path / "pairs.csv"), tmp_path / "out", chunk_rows=1000)
    written = _written(tmp_path / "out").to_pandas()
    chunk_of_row = np.arange(N_PAIRS) // 1000
    assert written.groupby(chunk_of_row)["request_id"].nunique().tolist() == [1] * math.ceil(N_PAIRS / 1000)
    assert written["request_id"].nunique() == math.ceil(N_PAIRS / 1000)
    expected = _expected(loaded_router, pairs_frame).drop_columns(["request_id"])
    assert pa.Table.from_pandas(written, schema=OUTPUT_SCHEMA).drop_columns(["request_id"]).equals(expected)


def test_scoring_records_no_decisions_where_the_router_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, router_version_uri: str, pairs_frame: pd.DataFrame
) -> None:
    log_dir = tmp_path / "live-decision-log"
    monkeypatch.setenv(DECISION_LOG_ENV, str(log_dir))
    pairs_frame.to_parquet(tmp_path / "pairs.parquet")
    score_pairs(router_version_uri, open_pairs(tmp_path / "pairs.parquet"), tmp_path / "out", chunk_rows=900)
    assert _decision_files(log_dir) == []
    assert os.environ[DECISION_LOG_ENV] == str(log_dir)  # restored for whatever runs next
    # The control: the same router loaded here with that environment does record.
    mlflow.pyfunc.load_model(router_version_uri).predict(pairs_frame.head(3))
    assert _decision_files(log_dir)


@pytest.mark.spark
def test_spark_engine_writes_exactly_the_routers_predict_and_no_decisions(
    tmp_path: Path, spark, loaded_router, router_version_uri: str, pairs_frame: pd.DataFrame
) -> None:
    log_dir = tmp_path / "live-decision-log"
    # What Spark's Python workers inherit (the environment their JVM started with, plus SparkContext's).
    spark.sparkContext.environment[DECISION_LOG_ENV] = str(log_dir)
    try:
        pairs_frame.to_parquet(tmp_path / "pairs.parquet")
        pairs = open_pairs(tmp_path / "pairs.parquet")
        result = score_pairs(router_version_uri, pairs, tmp_path / "scored", engine="spark", spark=spark)
        assert _decision_files(log_dir) == []
        # The control: a spark_udf of the same router without scoring's environment records in its workers.
        plain = mlflow.pyfunc.spark_udf(spark, router_version_uri, result_type=result_type(), env_manager="local")
        from pyspark.sql import functions

        spark.createDataFrame(pairs_frame.head(3)).select(plain(functions.struct("user_id", "item_id"))).collect()
        assert _decision_files(log_dir)
    finally:
        spark.sparkContext.environment.pop(DECISION_LOG_ENV, None)
    assert {p.suffix for p in (tmp_path / "scored").iterdir()} == {".parquet"}  # part files only
    written = _written(tmp_path / "scored")
    assert written.schema == OUTPUT_SCHEMA
    expected = _expected(loaded_router, pairs_frame)
    assert written.sort_by("request_id").equals(expected.sort_by("request_id"))
    assert result.rows == N_PAIRS and sum(result.arm_rows.values()) == N_PAIRS
