"""`mlflow run . -e main` with the default env manager: one python_env.yaml virtualenv for every step.

MLflow does not hand `--env-manager` down to nested runs; main reads the `mlflow.project.env` tag MLflow put on
its own run and passes it on. The environment (pyenv's Python 3.11.7 + `python -m venv` + requirements.txt; MLflow
3.17's virtualenv manager needs neither the `virtualenv` package nor uv) lives in MLFLOW_ENV_ROOT, by default
~/.mlflow/envs, so only the first run on a machine pays for the build. Set ABTEST_FRESH_ENV_ROOT=1 to build in a
temp dir instead (measures the full build).
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
def venv_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if shutil.which("pyenv") is None:
        pytest.skip("pyenv is not installed (MLflow's virtualenv manager installs the Python with it)")
    if os.environ.get("ABTEST_FRESH_ENV_ROOT"):
        monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path / "envs"))
    return make_store(tmp_path / "store", experiment="abtest-venv")


def test_default_env_manager_builds_one_virtualenv_for_every_step(
    venv_store: Store, project_snapshot: Snapshot, synthetic_ml100k_zip: Path
) -> None:
    params = {"source": "local", "data_path": str(synthetic_ml100k_zip), "until": "train_a"}
    started = time.monotonic()
    result = run_main(project_snapshot.path, venv_store, params, env_manager=None, timeout=1800)
    print(f"main (until train_a) with the virtualenv manager: {time.monotonic() - started:.0f} s")

    main_run = latest_main(venv_store)
    assert main_run.data.tags["mlflow.project.env"] == "virtualenv"
    assert main_run.data.tags["abtest.env_manager"] == "virtualenv"
    assert outcomes(main_run) == {"prepare": "ran", "train_a": "ran"}
    for entry in ("prepare", "train_a"):
        child = venv_store.client.get_run(main_run.data.tags[f"abtest.steps.{entry}.run_id"])
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.project.env"] == "virtualenv"
        assert child.data.tags["mlflow.parentRunId"] == main_run.info.run_id

    # One environment for main and both steps: at most one build, every other activation reuses it.
    log = result.stdout + result.stderr
    assert log.count("Creating a new environment") <= 1
    assert log.count("already exists") >= 2
