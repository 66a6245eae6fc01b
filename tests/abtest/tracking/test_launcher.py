"""The real launcher under the run loop: two independent steps of a tiny MLflow project run at the same time as
nested children of one run; when one fails, the other is stopped and its run KILLED."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from abtest.tracking.launcher import StepFailedError, mlflow_launcher
from abtest.tracking.pipeline import FAILED, KILLED, RAN, PipelineResult, Step, run_pipeline

PROJECT = """name: pair
entry_points:
  slow:
    parameters:
      seconds: {type: float, default: 60}
    command: python -c "import time; time.sleep({seconds})"
  fails:
    command: python -c "import time, sys; time.sleep(1); sys.exit(3)"
  quick:
    command: python -c "pass"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "pair"
    path.mkdir()
    (path / "MLproject").write_text(PROJECT)
    return path


def _run(project: Path, steps: tuple[Step, ...], user_params: dict[str, str], result: PipelineResult) -> None:
    experiment_id = mlflow.get_experiment_by_name("abtest-fresh").experiment_id
    run_pipeline(
        steps,
        user_params=user_params,
        declared={"slow": ["seconds"], "fails": [], "quick": []},
        defaults={"slow": {"seconds": "60"}, "fails": {}, "quick": {}},
        code_version="c1",
        experiment_id=experiment_id,
        launch=mlflow_launcher(project_uri=str(project), env_manager="local", experiment_id=experiment_id),
        result=result,
    )


def test_a_failing_step_stops_the_one_running_beside_it(fresh_tracking: str, project: Path) -> None:
    result = PipelineResult()
    started = time.monotonic()
    with mlflow.start_run() as parent, pytest.raises(StepFailedError) as raised:
        _run(project, (Step("slow"), Step("fails"), Step("quick", upstream=("slow",))), {}, result)
    assert time.monotonic() - started < 50  # slow (60 s) was stopped, not waited for
    records = {r.entry_point: r for r in result.records}
    assert {name: r.outcome for name, r in records.items()} == {"slow": KILLED, "fails": FAILED}
    slow, fails = (MlflowClient().get_run(records[name].run_id) for name in ("slow", "fails"))
    assert str(raised.value).startswith(f"step fails failed (run {fails.info.run_id}): ")
    assert str(raised.value).endswith(f"; step slow was stopped (run {slow.info.run_id} KILLED)")
    assert (slow.info.status, fails.info.status) == ("KILLED", "FAILED")
    assert slow.data.tags["abtest.killed_reason"].startswith("stopped because step fails failed")
    for child in (slow, fails):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert (slow.info.run_name, fails.info.run_name) == ("slow", "fails")


def test_independent_steps_overlap_and_are_named_after_their_params(fresh_tracking: str, project: Path) -> None:
    result = PipelineResult()
    with mlflow.start_run() as parent:
        _run(project, (Step("slow"), Step("quick")), {"seconds": "4"}, result)
    assert [(r.entry_point, r.outcome) for r in result.records] == [("slow", RAN), ("quick", RAN)]
    slow, quick = (MlflowClient().get_run(result.run_ids[name]) for name in ("slow", "quick"))
    assert slow.info.run_name == "slow seconds=4"
    assert {slow.info.status, quick.info.status} == {"FINISHED"}
    assert {slow.data.tags["mlflow.parentRunId"], quick.data.tags["mlflow.parentRunId"]} == {parent.info.run_id}
    # quick did not wait for slow: it ended while slow still slept.
    assert quick.info.end_time < slow.info.end_time - 1000
