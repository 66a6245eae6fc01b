"""The `simulate` step on the real registered router (session fixtures), in process and via `mlflow run`."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from abtest.config import PROJECT_DIR
from abtest.tracking.lineage import load_prepared

FAST = ["--days", "3", "--n_unseen", "10", "--k", "5"]


@pytest.fixture(scope="module")
def router(request: pytest.FixtureRequest) -> str:
    """The session's `router` run id (router engineer's fixture); skipped until that fixture exists."""
    try:
        return request.getfixturevalue("router_run")
    except pytest.FixtureLookupError:
        pytest.skip("router_run fixture (tests/fixtures/router.py) is not registered")


def _artifacts(run_id: str) -> set[str]:
    return {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "readout")}


def test_simulate_synthetic_through_the_router_run(router: str):
    from steps import simulate

    run_id = simulate.main(["--router_run", router, "--environment", "synthetic", *FAST])
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["abtest.step"] == "simulate"
    prepare_run = run.data.tags["abtest.prepare_run"]
    test_users = load_prepared(prepare_run).test["user_id"].nunique()
    metrics = run.data.metrics
    assert metrics["users_A"] + metrics["users_B"] == test_users
    assert metrics["impressions_A"] + metrics["impressions_B"] == 5 * test_users
    assert 0 <= metrics["true_ctr_A"] <= 1 and 0 <= metrics["true_ctr_B"] <= 1
    assert "abtest.decision" in run.data.tags
    assert {
        "readout/readout.html",
        "readout/readout.json",
        "readout/daily.csv",
        "readout/arms.csv",
        "readout/guardrails.csv",
        "readout/impressions.parquet",
    } <= _artifacts(run_id)


def test_simulate_replay_through_the_alias_is_the_same_router(router: str):
    from steps import simulate

    run_id = simulate.main(["--environment", "replay", *FAST])
    run = mlflow.MlflowClient().get_run(run_id)
    version = mlflow.MlflowClient().get_run(router).data.tags["abtest.router_version"]
    assert run.data.tags["abtest.router_uri"].endswith(f"/{version}")
    assert run.data.metrics["srm_flagged"] in (0.0, 1.0)
    assert "true_ctr_A" not in run.data.metrics  # replay has no ground truth


@pytest.mark.e2e
def test_mlflow_run_simulate_entry_point(router: str):
    before = {r.info.run_id for r in mlflow.search_runs(output_format="list")}
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "simulate", "--env-manager", "local"]
    command += ["-P", "days=2", "-P", "n_unseen=5", "-P", "k=3", "-P", "environment=synthetic"]
    # The session store's experiment by name only: `mlflow run` refuses both a name and an id.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    new = [r for r in mlflow.search_runs(output_format="list") if r.info.run_id not in before]
    assert len(new) == 1 and new[0].info.status == "FINISHED"
    assert new[0].data.params["environment"] == "synthetic" and new[0].data.params["days"] == "2"
    assert "cuped_variance_reduction" in new[0].data.metrics
