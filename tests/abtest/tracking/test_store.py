"""The SQLite default under concurrent load: schema created once under a lock, held locks retried, then explained.

Without the guard, processes that open a fresh SQLite file at the same moment race through MLflow's schema
migrations (measured: 4 of 4 failed, "duplicate column name: step" and friends); see abtest/tracking/store.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from abtest.config import PROJECT_DIR
from abtest.tracking.store import TrackingStoreBusyError, retry_when_locked, sqlite_path
from abtest.tracking.tags import STEP as STEP_TAG

LOCKED = MlflowException("(sqlite3.OperationalError) database is locked")


def test_sqlite_path_only_for_sqlite_files() -> None:
    assert sqlite_path("sqlite:////tmp/x/mlflow.db") == Path("/tmp/x/mlflow.db")
    assert sqlite_path("sqlite:///mlflow.db?timeout=5") == Path("mlflow.db")
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("postgresql://u:p@h/db") is None
    assert sqlite_path("sqlite:///:memory:") is None


def test_locked_call_is_retried_with_backoff() -> None:
    outcomes = [LOCKED, LOCKED, "run"]
    waits: list[float] = []

    def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_when_locked(call, what="prepare: start run", first_wait_s=1.5, sleep=waits.append) == "run"
    assert waits == [1.5, 3.0]


def test_lock_that_never_clears_gives_a_clear_message() -> None:
    def call() -> None:
        raise MlflowException("write failed") from LOCKED

    with pytest.raises(
        TrackingStoreBusyError, match=r"prepare: start run: the SQLite tracking store .* stayed locked"
    ) as info:
        retry_when_locked(call, what="prepare: start run", attempts=3, sleep=lambda _: None)
    assert "team.server" in str(info.value)
    assert "database is locked" not in str(info.value)  # the raw message is the cause, not the headline


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run 'x' not found")

    with pytest.raises(MlflowException, match="not found"):
        retry_when_locked(call, what="x", sleep=lambda _: None)
    assert calls == [1]
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        retry_when_locked(lambda: None, what="x", attempts=0)


# A process's first contact with the store must be the guarded one (as `python -m abtest.tracking.store` does
# before concurrent `mlflow run`s: the mlflow CLI opens the store before any project code runs).
WRITER = """
import sys, mlflow
from abtest.tracking.lineage import step_run
from abtest.tracking.store import ensure_store_ready
ensure_store_ready(sys.argv[1])
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("concurrent")
for k in range(3):
    with step_run("writer"):
        mlflow.log_params({f"p{j}": j for j in range(5)})
        mlflow.log_metrics({f"m{j}": float(j) for j in range(5)})
"""


@pytest.mark.e2e
def test_processes_sharing_a_fresh_sqlite_file_all_finish(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    env = {"PYTHONPATH": str(PROJECT_DIR), "PATH": "/usr/bin:/bin"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(3)
    ]  # fmt: skip
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id], f"tags.{STEP_TAG} = 'writer'")
    assert len(runs) == 9
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert all(run.data.metrics["m4"] == 4.0 for run in runs)
