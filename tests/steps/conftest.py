"""Fixtures of the step tests: hand-made lineage for the `register` and `router` tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.router import HandmadeRuns, log_handmade_runs
from tests.fixtures.tracking import point_mlflow_at


@pytest.fixture(scope="module")
def handmade_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, session_tracking: str
) -> Iterator[HandmadeRuns]:
    """Hand-made prepare/train runs, logged once per test module in a store of that module's own.

    Each test registers under its own model names, so the tests of a module stay independent without paying for a
    new store and new runs each; another module never sees these runs or registrations.
    """
    module = request.module.__name__.rpartition(".")[2]
    point_mlflow_at(tmp_path_factory.mktemp(f"{module}-store"), f"abtest-{module}")
    yield log_handmade_runs()
    point_mlflow_at(Path(session_tracking.removeprefix("sqlite:///")).parent, "abtest-tests")
