"""`mlflow run . -e main --env-manager uv`, the README's first command's environment, built for real.

MLflow 3.17's uv manager runs `uv venv <env> --python=3.11.7` (python_env.yaml's version) and `uv pip install` of
python_env.yaml's build dependencies and dependencies, from a temp dir of links to the project's files, so the
project's uv.toml (bytecode compiled at install) applies. The environment lives under MLFLOW_ENV_ROOT with the same
name the virtualenv manager gives it, so the test builds in a temp root: otherwise an environment the virtualenv
manager built earlier would be reused and uv never run. uv is the version requirements-uv.txt pins: the one on
PATH when it is that version, else installed with pip into the test's temp dir (uv's wheel cache may be warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abtest.config import PROJECT_DIR
from tests.fixtures.pipeline_runs import Snapshot, Store, latest_main, make_store, outcomes, run_main

pytestmark = [pytest.mark.e2e, pytest.mark.virtualenv]


def _pinned_uv() -> str:
    pins = [
        line.strip()
        for line in (PROJECT_DIR / "requirements-uv.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(pins) == 1 and pins[0].startswith("uv=="), f"requirements-uv.txt should pin uv alone, has {pins}"
    return pins[0].removeprefix("uv==")


def _uv_version(uv: str) -> str:
    return subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]


@pytest.fixture
def uv_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """PATH holds the pinned uv (MLflow calls `uv` by name); returns its version."""
    version = _pinned_uv()
    found = shutil.which("uv")
    if found is None or _uv_version(found) != version:
        target = tmp_path / "uv-install"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "-r", "requirements-uv.txt"],
            cwd=PROJECT_DIR,
            check=True,
        )
        monkeypatch.setenv("PATH", f"{target / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert _uv_version(shutil.which("uv") or "uv") == version
    return version


@pytest.fixture
def uv_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path / "envs"))
    return make_store(tmp_path / "store", experiment="abtest-uv")


def test_uv_env_manager_builds_one_environment_for_main_and_its_steps(
    uv_on_path: str, uv_store: Store, project_snapshot: Snapshot, synthetic_ml100k_zip: Path, tmp_path: Path
) -> None:
    params = {"source": "local", "data_path": str(synthetic_ml100k_zip), "until": "prepare"}
    started = time.monotonic()
    result = run_main(project_snapshot.path, uv_store, params, env_manager="uv", timeout=1800)
    print(f"main (until prepare) with the uv manager, uv {uv_on_path}: {time.monotonic() - started:.0f} s")

    main_run = latest_main(uv_store)
    assert main_run.data.tags["mlflow.project.env"] == "uv"
    assert main_run.data.tags["abtest.env_manager"] == "uv"
    assert outcomes(main_run) == {"prepare": "ran"}
    child = uv_store.client.get_run(main_run.data.tags["abtest.steps.prepare.run_id"])
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.project.env"] == "uv"
    assert child.data.tags["mlflow.parentRunId"] == main_run.info.run_id

    # uv built the one environment (main's), the step reused it.
    log = result.stdout + result.stderr
    assert log.count("Creating a new environment") == 1
    assert "using uv" in log
    assert log.count("already exists") >= 1
    (environment,) = (tmp_path / "envs").iterdir()
    site_packages = environment / "lib" / "python3.11" / "site-packages"
    # pip is python_env.yaml's build dependency (prepare's pypi source runs `pip download`); uv.toml's bytecode
    # compilation reached MLflow's `uv pip install`.
    assert (site_packages / "pip").is_dir()
    assert list((site_packages / "mlflow" / "__pycache__").glob("*.cpython-311.pyc"))
