"""The `score` step on the session's registered router: in process (default input, a given output folder, bad
input) and through `mlflow run . -e score --env-manager local`; the scored Parquet equals the router's predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ab_router.records import DECISION_LOG_ENV
from abtest.config import PROJECT_DIR
from abtest.experiment.router_client import resolve_router
from abtest.scoring import OUTPUT_SCHEMA, InputError, OutputError
from abtest.tracking.lineage import load_prepared
from steps import score
from steps.cli import parse_params

ROUTER_URI = "models:/movielens_ctr_router@router"


@pytest.fixture(scope="module")
def router(router_run: str):
    """The session router's version (its handle: version URI and tags)."""
    return resolve_router(ROUTER_URI, router_run="")


@pytest.fixture(scope="module")
def loaded_router(router):
    before = os.environ.pop(DECISION_LOG_ENV, None)
    try:
        return mlflow.pyfunc.load_model(router.model_uri)
    finally:
        if before is not None:
            os.environ[DECISION_LOG_ENV] = before


def _pairs(router, n: int) -> pd.DataFrame:
    test = load_prepared(router.prepare_run).test
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "user_id": rng.choice(test["user_id"].to_numpy(), n).astype(np.int64),
            "item_id": rng.choice(test["item_id"].to_numpy(), n).astype(np.int64),
            "request_id": [f"r{i}" for i in range(n)],
        }
    )


def _expected(loaded_router, frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(loaded_router.predict(frame), schema=OUTPUT_SCHEMA, preserve_index=False)


def test_default_input_is_the_routers_test_pairs_scored_into_the_runs_artifacts(
    router, loaded_router, tmp_path: Path
) -> None:
    run_id = score.main(["--chunk_rows", "400"])
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["abtest.step"] == "score"
    _, _, version = router.model_uri.rpartition("/")
    assert run.data.tags["abtest.router_version"] == version
    assert run.data.tags["abtest.router_uri"] == router.model_uri
    assert run.data.tags["abtest.prepare_run"] == router.prepare_run
    assert run.data.params["input"] == f"runs:/{router.prepare_run}/processed/test.parquet"
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="scored", dst_path=str(tmp_path))
    written = pq.read_table(local).replace_schema_metadata(None)
    test_pairs = load_prepared(router.prepare_run).test[["user_id", "item_id"]]
    # No request_id in the test split: compare everything else (the ids are generated per chunk).
    expected = _expected(loaded_router, test_pairs).drop_columns(["request_id"])
    assert written.drop_columns(["request_id"]).equals(expected)
    metrics = run.data.metrics
    assert metrics["rows"] == len(test_pairs) == metrics["rows_A"] + metrics["rows_B"]
    assert metrics["rows_A"] == written.column("policy").to_pylist().count("A") and metrics["rows_per_s"] > 0
    (dataset,) = run.inputs.dataset_inputs
    artifacts = mlflow.get_run(router.prepare_run).info.artifact_uri
    assert json.loads(dataset.dataset.source) == {"uri": f"{artifacts}/processed/test.parquet"}
    assert [c["name"] for c in json.loads(dataset.dataset.schema)["mlflow_colspec"]] == ["user_id", "item_id"]
    assert dataset.tags[0].value == "scoring" and dataset.dataset.digest


def test_a_given_output_folder_gets_the_parts(router, loaded_router, tmp_path: Path) -> None:
    frame = _pairs(router, 300)
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    run_id = score.main(["--input", str(tmp_path / "pairs.csv"), "--output", str(tmp_path / "out")])
    written = pq.read_table(tmp_path / "out").replace_schema_metadata(None)
    assert written.equals(_expected(loaded_router, frame))
    assert mlflow.MlflowClient().list_artifacts(run_id, "scored") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging sibling left


def test_bad_input_fails_the_run_and_writes_nothing(router, tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1, 2], "item_id": [1.5, 2.0]}).to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(InputError, match=r"pairs\.parquet: column 'item_id' must hold an integer .*double"):
        score.main(["--input", str(tmp_path / "pairs.parquet"), "--output", str(tmp_path / "out")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.parquet"]
    failed = mlflow.search_runs(filter_string="tags.`abtest.step` = 'score'", output_format="list")[0]
    assert failed.info.status == "FAILED" and "item_id" in failed.data.tags["abtest.error"]


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--engine", "dask"], ValueError, r"parameter engine must be one of \['local', 'spark'\], got 'dask'"),
        (["--chunk_rows", "0"], ValueError, r"parameter chunk_rows must be an integer >= 1, got 0"),
        (["--spark_conf", "spark.driver.memory"], ValueError, r"spark_conf must be key=value .*'spark\.driver"),
        (["--input", "/nowhere/p.parquet"], ValueError, r"parameter input .*'/nowhere/p\.parquet': no such"),
    ],
)
def test_check_params_refuses_bad_parameters(argv: list[str], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        score.check_params(parse_params("score", argv))


def test_check_params_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "old.parquet").write_bytes(b"earlier")
    with pytest.raises(OutputError, match=rf"folder {tmp_path} exists and is not empty"):
        score.check_params(parse_params("score", ["--output", str(tmp_path)]))


@pytest.mark.e2e
def test_mlflow_run_score_entry_point(router, loaded_router, tmp_path: Path) -> None:
    frame = _pairs(router, 500)
    frame.to_parquet(tmp_path / "pairs.parquet")
    log_dir = tmp_path / "live-decision-log"
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "score", "--env-manager", "local"]
    command += ["-P", f"input={tmp_path / 'pairs.parquet'}", "-P", f"output={tmp_path / 'out'}"]
    command += ["-P", "chunk_rows=128"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env[DECISION_LOG_ENV] = str(log_dir)  # a live router's environment: scoring must not write into its log
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    written = pq.read_table(tmp_path / "out").replace_schema_metadata(None)
    assert written.equals(_expected(loaded_router, frame))
    assert not log_dir.exists() or not any(p.is_file() for p in log_dir.rglob("*"))
    run = mlflow.search_runs(filter_string="tags.`abtest.step` = 'score'", output_format="list")[0]
    assert run.info.status == "FINISHED" and run.data.metrics["rows"] == 500
    assert run.data.params["chunk_rows"] == "128" and run.data.params["engine"] == "local"
