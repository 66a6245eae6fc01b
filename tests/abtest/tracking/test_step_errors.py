"""A failed step's reason travels from its run (tag abtest.error) to main's StepFailedError and step table."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from abtest.config import PROJECT_DIR
from abtest.tracking.launcher import StepFailedError, failure_reason, mlflow_launcher
from abtest.tracking.lineage import step_run
from abtest.tracking.tags import ERROR as ERROR_TAG
from abtest.tracking.tags import SHORT_VALUE_CHARS as ERROR_TAG_CHARS
from abtest.tracking.tags import STEP as STEP_TAG
from steps import register


def test_step_run_tags_the_run_with_the_error_its_body_raised(fresh_tracking: str) -> None:
    with pytest.raises(ValueError, match="split must be"), step_run("router") as run:
        raise ValueError("split must be a number in [0, 1], got 2.0")
    failed = MlflowClient().get_run(run.info.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[ERROR_TAG] == "ValueError: split must be a number in [0, 1], got 2.0"


def test_a_long_error_is_cut_to_a_tag_sized_text(fresh_tracking: str) -> None:
    with pytest.raises(RuntimeError), step_run("prepare") as run:
        raise RuntimeError("x" * 5000)
    tag = MlflowClient().get_run(run.info.run_id).data.tags[ERROR_TAG]
    assert len(tag) == ERROR_TAG_CHARS
    assert tag.startswith("RuntimeError: xxx") and tag.endswith("...")


def test_failure_reason_falls_back_when_the_run_has_no_error_tag(fresh_tracking: str) -> None:
    with mlflow.start_run() as run:
        pass
    reason = failure_reason(run.info.run_id, "Run (ID 'abc') failed")
    assert (
        reason == "Run (ID 'abc') failed (the step recorded no abtest.error tag: the cause is in its output above)"
    )
    assert failure_reason(None, "boom").startswith("boom (")


BOOM_PROJECT = """name: boom
entry_points:
  boom:
    parameters:
      split: {type: float, default: 2.0}
    command: python boom.py {split}
  early:
    command: python early.py
  late:
    command: python late.py
"""
BOOM_STEP = """import sys
from abtest.tracking.lineage import step_run
with step_run("router"):
    raise ValueError(f"split must be a number in [0, 1], got {float(sys.argv[1])}")
"""
# A step whose check fails before it opens its run, as register's lineage checks do.
EARLY_STEP = """from abtest.tracking.lineage import records_failure

@records_failure
def main():
    raise ValueError("policies A and B must be trained on the same prepare run")

main()
"""
# A step that fails after its run block closed (its last summary line, say): the run is FAILED all the same.
LATE_STEP = """from abtest.tracking.lineage import records_failure, step_run

@records_failure
def main():
    with step_run("late"):
        pass
    raise RuntimeError("the summary after the run failed")

main()
"""


def test_launcher_puts_the_step_error_in_step_failed_error(
    fresh_tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "MLproject").write_text(BOOM_PROJECT)
    (project / "boom.py").write_text(BOOM_STEP)
    (project / "early.py").write_text(EARLY_STEP)
    (project / "late.py").write_text(LATE_STEP)
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_DIR))
    experiment_id = mlflow.get_experiment_by_name("abtest-fresh").experiment_id
    launch = mlflow_launcher(project_uri=str(project), env_manager="local", experiment_id=experiment_id)
    with pytest.raises(StepFailedError) as raised:
        launch("boom", {"split": "2.0"}).result()
    failure = raised.value
    assert failure.run_id is not None
    assert str(failure) == (
        f"step boom failed (run {failure.run_id}): ValueError: split must be a number in [0, 1], got 2.0"
    )

    with pytest.raises(StepFailedError) as raised:
        launch("early", {}).result()
    early = raised.value
    assert str(early) == (
        f"step early failed (run {early.run_id}): "
        "ValueError: policies A and B must be trained on the same prepare run"
    )
    assert MlflowClient().get_run(early.run_id).info.status == "FAILED"

    with pytest.raises(StepFailedError) as raised:
        launch("late", {}).result()
    assert str(raised.value).endswith("RuntimeError: the summary after the run failed")


def test_register_records_a_refusal_before_its_run_on_the_launched_run(
    fresh_tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def finished(tags: dict[str, str]) -> str:
        with mlflow.start_run() as run:
            mlflow.set_tags(tags)
        return run.info.run_id

    train_a = finished({STEP_TAG: "train_a", "abtest.prepare_run": finished({STEP_TAG: "prepare"})})
    train_b = finished({STEP_TAG: "train_b", "abtest.prepare_run": finished({STEP_TAG: "prepare"})})
    launched = MlflowClient().create_run(mlflow.get_experiment_by_name("abtest-fresh").experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", launched.info.run_id)  # as `mlflow run . -e register` sets it
    with pytest.raises(ValueError, match="same prepare run"):
        register.main(["--train_a_run", train_a, "--train_b_run", train_b])
    tag = MlflowClient().get_run(launched.info.run_id).data.tags[ERROR_TAG]
    assert tag.startswith("ValueError: policies A and B must be trained on the same prepare run, got A on prepare")
