"""Fixtures for the end-to-end `main` tests: a frozen copy of the project and tracking stores of their own.

- ``project_snapshot``: the working tree (tracked and untracked, not ignored files) committed to a fresh git repo
  in a temp dir and tagged ``SNAPSHOT_TAG``, so a test's runs see one code version even while the checkout
  changes, and ``git daemon`` can serve it.
- ``main_store``: a SQLite tracking + registry store and experiment for one test module (registered model names
  and aliases are store-wide, so the pipeline tests cannot share the session store with other areas' tests).
- :func:`run_main`: ``mlflow run`` as a subprocess against such a store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from abtest.config import PROJECT_DIR

SNAPSHOT_TAG = "v-test"
SNAPSHOT_BRANCH = "snapshot"
# Small enough to keep the whole pipeline in the low minutes on synthetic data.
FAST_PARAMS: dict[str, str] = {"n_estimators": "30", "cv_folds": "2", "n_bootstrap": "50", "days": "3"}


@dataclass(frozen=True)
class Snapshot:
    """A committed, tagged copy of the project."""

    path: Path
    commit: str


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return result.stdout.strip()


@pytest.fixture(scope="session")
def project_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The current project files as a one-commit git repo on branch ``snapshot``, tagged ``v-test``."""
    root = tmp_path_factory.mktemp("snapshot") / "abtest-mlflow-movielens"
    files = _git(PROJECT_DIR, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for relative in files:
        source = PROJECT_DIR / relative
        if source.is_file():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / relative)
    _git(root, "init", "-q", "-b", SNAPSHOT_BRANCH)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "snapshot")
    _git(root, "tag", SNAPSHOT_TAG)
    return Snapshot(root, _git(root, "rev-parse", "HEAD"))


@dataclass(frozen=True)
class Store:
    """A tracking/registry store and experiment that only the given subprocesses and clients use."""

    root: Path
    uri: str
    experiment: str

    @property
    def client(self) -> MlflowClient:
        """A client bound to this store (tracking and registry)."""
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def experiment_id(self) -> str:
        """Id of this store's experiment."""
        return self.client.get_experiment_by_name(self.experiment).experiment_id

    def env(self) -> dict[str, str]:
        """Environment for an `mlflow run` subprocess writing to this store."""
        # Another test's run may have left MLFLOW_EXPERIMENT_ID/MLFLOW_RUN_ID behind; `mlflow run` rejects an id
        # together with a name, and a run id would not belong to this store.
        inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
        return {
            **inherited,
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_REGISTRY_URI": self.uri,
            "MLFLOW_EXPERIMENT_NAME": self.experiment,
        }

    def runs(self, filter_string: str = "") -> list[Run]:
        """Every run of the experiment (newest first) matching ``filter_string``."""
        return self.client.search_runs(
            [self.experiment_id], filter_string, order_by=["attributes.start_time DESC"]
        )


def make_store(root: Path, experiment: str = "abtest-main") -> Store:
    """A new SQLite store under ``root`` with ``experiment`` (explicit artifact root, never ./mlruns)."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root, f"sqlite:///{root / 'mlflow.db'}", experiment)
    store.client.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    return store


@pytest.fixture(scope="module")
def main_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store for one test module's chain of `main` runs."""
    return make_store(tmp_path_factory.mktemp("main-store"))


def run_main(
    project: str | Path,
    store: Store,
    params: dict[str, str],
    *,
    version: str | None = None,
    env_manager: str | None = "local",
    cwd: Path | None = None,
    timeout: float = 1200,
) -> subprocess.CompletedProcess[str]:
    """``mlflow run <project> -e main`` with ``-P`` params; fails the test with the output when it fails."""
    command: list[str] = [sys.executable, "-m", "mlflow", "run", str(project), "-e", "main"]
    if version is not None:
        command += ["--version", version]
    if env_manager is not None:
        command += ["--env-manager", env_manager]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    result = subprocess.run(
        command, cwd=cwd or store.root, env=store.env(), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{_tail(result.stdout)}\n{_tail(result.stderr)}")
    return result


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def step_runs(store: Store, main_run_id: str) -> dict[str, Run]:
    """The child runs of one main run, by entry point."""
    children = store.runs(f"tags.`mlflow.parentRunId` = '{main_run_id}'")
    return {run.data.tags["mlflow.project.entryPoint"]: run for run in children}


def latest_main(store: Store) -> Run:
    """The newest main run in the store's experiment."""
    return store.runs("tags.`mlflow.project.entryPoint` = 'main'")[0]


def outcomes(main_run: Run) -> dict[str, str]:
    """Entry point -> ran/reused/failed, from main's tags."""
    prefix, suffix = "abtest.steps.", ".outcome"
    return {
        key.removeprefix(prefix).removesuffix(suffix): value
        for key, value in main_run.data.tags.items()
        if key.startswith(prefix) and key.endswith(suffix)
    }
