"""`register` refuses lineage it cannot vouch for, before any version or alias changes; versions skip histories."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from abtest.tracking import registry, tags
from abtest.tracking.lineage import LineageError
from abtest.tracking.tags import STEP as STEP_TAG
from steps import register
from tests.fixtures.router import HandmadeRuns, log_handmade_policy


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    return f"policies_{request.node.name}"


def _finished_run(tags: dict[str, str], params: dict[str, str] | None = None) -> str:
    with mlflow.start_run() as run:
        mlflow.set_tags(tags)
        mlflow.log_params(params or {})
    return run.info.run_id


def _evaluate_run_of(train_a: str, train_b: str) -> str:
    # As `mlflow run . -e evaluate` leaves it: "" params, the resolved ids as abtest.resolved.* tags.
    with mlflow.start_run() as run:
        mlflow.set_tags(
            {
                STEP_TAG: "evaluate",
                "abtest.resolved.train_a_run": train_a,
                "abtest.resolved.train_b_run": train_b,
                "abtest.decision": "B wins",
            }
        )
        mlflow.log_params({"train_a_run": "", "train_b_run": ""})
        mlflow.log_metrics({"a.auc": 0.61, "b.auc": 0.62})
    return run.info.run_id


def _versions(model: str) -> list:
    return MlflowClient().search_model_versions(f"name = '{model}'")


def test_an_evaluate_run_of_other_training_runs_is_refused_before_registering(
    handmade_runs: HandmadeRuns, model: str
) -> None:
    other_a = _finished_run({STEP_TAG: "train_a", "abtest.prepare_run": handmade_runs.prepare})
    unrelated = _evaluate_run_of(other_a, handmade_runs.train_b)
    argv = ["--train_a_run", handmade_runs.train_a, "--train_b_run", handmade_runs.train_b, "--model_name", model]
    with pytest.raises(LineageError, match=f"evaluate run {unrelated} evaluated .*{other_a}"):
        register.main([*argv, "--evaluate_run", unrelated])
    assert _versions(model) == []

    matching = _evaluate_run_of(handmade_runs.train_a, handmade_runs.train_b)
    register.main([*argv, "--evaluate_run", matching])
    a = MlflowClient().get_model_version_by_alias(model, "PolicyA")
    assert (a.tags[tags.EVALUATE_RUN], a.tags["eval.a.auc"]) == (matching, "0.61")


def test_policies_of_different_prepare_runs_are_refused_naming_both(
    handmade_runs: HandmadeRuns, model: str
) -> None:
    other_prepare = _finished_run({STEP_TAG: "prepare"})
    other_b = _finished_run({STEP_TAG: "train_b", "abtest.prepare_run": other_prepare})
    argv = ["--train_a_run", handmade_runs.train_a, "--train_b_run", other_b, "--model_name", model]
    with pytest.raises(ValueError, match="same prepare run") as raised:
        register.main(argv)
    message = str(raised.value)
    assert f"A on prepare run {handmade_runs.prepare}" in message
    assert f"B on prepare run {other_prepare}" in message
    assert "RunInfo" not in message and "RunData" not in message
    assert _versions(model) == []


def test_versions_carry_no_per_iteration_history_as_metric_tags(handmade_runs: HandmadeRuns, model: str) -> None:
    train_b = log_handmade_policy("train_b", handmade_runs.prepare)
    # train_b's validation curve: best at iteration 1, then 2 more iterations before early stopping.
    history = [Metric("curve_val_auc", value, 0, step) for step, value in enumerate([0.70, 0.72, 0.69])]
    MlflowClient().log_batch(train_b, metrics=history)
    register.main(["--train_a_run", handmade_runs.train_a, "--train_b_run", train_b, "--model_name", model])
    b = MlflowClient().get_model_version_by_alias(model, "PolicyB")
    assert b.tags["metric.val_auc"] == "0.75"
    assert not [key for key in b.tags if "curve_" in key]


def test_metric_tags_leave_out_curve_histories() -> None:
    tags = registry.metric_tags({"val_auc": 0.7, "curve_val_auc": 0.69, "a.auc": 0.6}, prefix="metric.")
    assert tags == {"metric.a.auc": "0.6", "metric.val_auc": "0.7"}
