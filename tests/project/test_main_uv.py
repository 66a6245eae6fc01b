"""`mlflow run . -e main --env-manager uv`: main passes the uv manager on to every step, the steps run together.

MLflow 3.17's uv manager builds python_env.yaml's environment with ``uv venv --python=3.11.7`` (pyenv's
interpreter) and ``uv pip install``; the environment lives in MLFLOW_ENV_ROOT (~/.mlflow/envs unless
ABTEST_FRESH_ENV_ROOT=1 builds it in a temp dir). train_a and train_b are submitted asynchronously, each through
its own ``mlflow run --env-manager uv`` subprocess, so the manager must reach those too.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.fixtures.pipeline_runs import Snapshot, Store, latest_main, make_store, outcomes, run_main

pytestmark = [pytest.mark.e2e, pytest.mark.virtualenv]


@pytest.fixture
def uv_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed (pip install -r requirements-uv.txt)")
    if os.environ.get("ABTEST_FRESH_ENV_ROOT"):
        monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path / "envs"))
    return make_store(tmp_path / "store", experiment="abtest-uv")


def test_uv_env_manager_reaches_every_step(
    uv_store: Store, project_snapshot: Snapshot, synthetic_ml100k_zip: Path
) -> None:
    params = {"source": "local", "data_path": str(synthetic_ml100k_zip), "n_estimators": "30", "until": "train_b"}
    started = time.monotonic()
    result = run_main(project_snapshot.path, uv_store, params, env_manager="uv", timeout=1800)
    print(f"main (until train_b) with the uv manager: {time.monotonic() - started:.0f} s")

    main_run = latest_main(uv_store)
    assert main_run.data.tags["mlflow.project.env"] == "uv"
    assert main_run.data.tags["abtest.env_manager"] == "uv"
    assert outcomes(main_run) == {"prepare": "ran", "train_a": "ran", "train_b": "ran"}
    children = {
        entry: uv_store.client.get_run(main_run.data.tags[f"abtest.steps.{entry}.run_id"])
        for entry in ("prepare", "train_a", "train_b")
    }
    for child in children.values():
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.project.env"] == "uv"
        assert child.data.tags["mlflow.parentRunId"] == main_run.info.run_id
    train_a, train_b = children["train_a"].info, children["train_b"].info
    assert train_a.start_time < train_b.end_time and train_b.start_time < train_a.end_time

    # One environment for main and every step: at most one build, every other activation reuses it.
    log = result.stdout + result.stderr
    assert log.count("Creating a new environment") <= 1
    assert log.count("already exists") >= 3
