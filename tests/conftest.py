"""Test-session wiring: every test talks to a real SQLite tracking store in a temp dir, never to ./mlruns.

The tests mirror the project's folders. Fixtures that several folders use are plugins, one module per area
(tests/fixtures/*.py); fixtures of one folder live in that folder's conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.tracking import point_mlflow_at

pytest_plugins: list[str] = [
    "tests.fixtures.data",
    "tests.fixtures.features",
    "tests.fixtures.models",
    "tests.fixtures.router",
    "tests.fixtures.spark",
]


@pytest.fixture(scope="session", autouse=True)
def session_tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the session, shared by the session-scoped pipeline fixtures."""
    root = tmp_path_factory.mktemp("mlflow-session")
    old_cwd = os.getcwd()
    os.chdir(root)  # anything that still writes relative paths writes here, not into the repo
    uri = point_mlflow_at(root, "abtest-tests")
    yield uri
    os.chdir(old_cwd)


@pytest.fixture
def fresh_tracking(tmp_path: Path, session_tracking: str):
    """A tracking store of the test's own (registry and caching tests must not see other tests' runs)."""
    uri = point_mlflow_at(tmp_path, "abtest-fresh")
    yield uri
    point_mlflow_at(Path(session_tracking.removeprefix("sqlite:///")).parent, "abtest-tests")
