"""Fixtures for the end-to-end `main` tests: a frozen copy of the project and tracking stores of their own.

- ``project_snapshot``: the working tree (tracked and untracked, not ignored files) committed to a fresh git repo
  in a temp dir and tagged ``SNAPSHOT_TAG``, so a test's runs see one code version even while the checkout
  changes, and ``git daemon`` can serve it.
- ``main_store``: a SQLite tracking + registry store and experiment for one test module (registered model names
  and aliases are store-wide, so the pipeline tests cannot share the session store with other areas' tests).

The helpers that run `main` against such a store and read its runs are in tests/fixtures/pipeline_runs.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from abtest.config import PROJECT_DIR
from tests.fixtures.pipeline_runs import SNAPSHOT_BRANCH, SNAPSHOT_TAG, Snapshot, Store, make_store


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


@pytest.fixture(scope="module")
def main_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store for one test module's chain of `main` runs."""
    return make_store(tmp_path_factory.mktemp("main-store"))
