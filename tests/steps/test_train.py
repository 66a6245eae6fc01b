"""The train_a / train_b steps against a real (SQLite) tracking store: lineage, logging, the logged models."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from ab_router import schema
from ab_router.policy import positive_scores
from abtest.config import PROJECT_DIR
from abtest.policies import models, training
from abtest.tracking.lineage import LineageError, load_prepared
from abtest.tracking.params import effective_params
from abtest.tracking.tags import MODEL_URI as MODEL_URI_TAG
from abtest.tracking.tags import PREPARE_RUN as PREPARE_RUN_TAG
from steps import train_a, train_b
from steps.cli import parameter_defaults
from tests.fixtures.models import log_synthetic_prepare_run

PREPARE_DEFAULTS = parameter_defaults("prepare")
METRICS = {f"{split}_{name}" for split in ("train", "val") for name in ("auc", "pr_auc", "logloss", "brier")}


def model_metrics(run_id: str) -> dict[str, float]:
    """The run's headline metrics (the per-iteration curve histories left out)."""
    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if not k.startswith("curve_")}


@pytest.fixture(scope="module")
def runs(train_a_run: str, train_b_run: str) -> dict[str, mlflow.entities.Run]:
    client = mlflow.MlflowClient()
    return {"A": client.get_run(train_a_run), "B": client.get_run(train_b_run)}


def test_training_runs_log_lineage_params_metrics_and_artifacts(runs: dict[str, mlflow.entities.Run]) -> None:
    client = mlflow.MlflowClient()
    expected_artifacts = {
        "A": {"coefficients.csv", "coefficients.png", "features.json"},
        "B": {"importance.csv", "importance.png", "validation_curve.csv", "validation_curve.png", "features.json"},
    }
    for policy, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["abtest.step"] == f"train_{policy.lower()}"
        prepare_run = run.data.params["prepare_run"]
        assert client.get_run(prepare_run).data.tags["abtest.step"] == "prepare"
        assert run.data.tags[PREPARE_RUN_TAG] == prepare_run
        assert run.data.params["seed"] == "42"  # prepare's default, inherited
        assert set(run.data.metrics) >= METRICS
        assert all(0.0 < run.data.metrics[f"val_{m}"] < 1.0 for m in ("auc", "pr_auc", "logloss", "brier"))
        assert run.data.tags[MODEL_URI_TAG].startswith("models:/")
        assert expected_artifacts[policy] <= {a.path for a in client.list_artifacts(run.info.run_id)}
        features = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/features.json")
        assert features["features"] == list(schema.FEATURE_COLUMNS)
        assert {d.dataset.name for d in run.inputs.dataset_inputs} == {
            f"prepare-{prepare_run}/train",
            f"prepare-{prepare_run}/val",
        }
    b = runs["B"].data
    assert 1 <= b.metrics["best_iteration"] <= int(b.params["n_estimators"])
    history = client.get_metric_history(runs["B"].info.run_id, "curve_val_auc")
    assert max(m.value for m in history) == pytest.approx(b.metrics["val_auc"])


@pytest.mark.parametrize("policy", ["A", "B"])
def test_pyfunc_model_reproduces_in_process_predictions(runs: dict[str, mlflow.entities.Run], policy: str) -> None:
    run = runs[policy]
    data = load_prepared(run.data.params["prepare_run"])
    refit = models.fit_policy(policy, data.train, data.val, params=effective_params(run))
    model = mlflow.pyfunc.load_model(run.data.tags[MODEL_URI_TAG])
    served = positive_scores(model, schema.to_feature_frame(data.test))
    np.testing.assert_allclose(served, refit.predict(data.test), rtol=1e-12, atol=0)
    # The same refit reproduces the logged validation metric exactly (same data + params + seed).
    val_auc = models.classification_metrics(data.val["label"].to_numpy(), refit.predict(data.val))["auc"]
    assert val_auc == run.data.metrics["val_auc"]


@pytest.mark.parametrize("policy", ["A", "B"])
def test_signature_rejects_a_frame_missing_a_feature(runs: dict[str, mlflow.entities.Run], policy: str) -> None:
    run = runs[policy]
    model = mlflow.pyfunc.load_model(run.data.tags[MODEL_URI_TAG])
    frame = schema.to_feature_frame(load_prepared(run.data.params["prepare_run"]).test.head(5))
    with pytest.raises(MlflowException, match=r"missing inputs.*'user_pos_rate'"):
        model.predict(frame.drop(columns=["user_pos_rate"]))


def test_num_leaves_reaches_the_booster(runs: dict[str, mlflow.entities.Run]) -> None:
    prepare_run = runs["B"].data.params["prepare_run"]
    args = [
        "--num_leaves",
        "63",
        "--min_child_samples",
        "3",
        "--n_estimators",
        "20",
        "--early_stopping_rounds",
        "0",
    ]
    run_id = train_b.main(["--prepare_run", prepare_run, *args])
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.params["num_leaves"] == "63"
    booster = mlflow.lightgbm.load_model(run.data.tags[MODEL_URI_TAG])
    assert "[num_leaves: 63]" in booster.model_to_string()
    leaves = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert len(leaves) == 20 and 31 < max(leaves) <= 63


@pytest.mark.parametrize("policy", ["A", "B"])
def test_same_data_params_and_seed_give_identical_metrics(
    runs: dict[str, mlflow.entities.Run], policy: str
) -> None:
    first = runs[policy]
    step = {"A": train_a, "B": train_b}[policy]
    argv = ["--prepare_run", first.data.params["prepare_run"]]
    if policy == "B":
        argv += ["--n_estimators", first.data.params["n_estimators"]]
    again = step.main(argv)
    assert model_metrics(again) == model_metrics(first.info.run_id)


def test_without_a_prepare_run_the_error_says_which_command_makes_one(fresh_tracking: str) -> None:
    with pytest.raises(
        LineageError, match=r"no FINISHED prepare run.*mlflow run \. -e prepare -P dataset=ml-100k"
    ):
        train_a.main([])
    with pytest.raises(LineageError, match=r"-P dataset=ml-1m -P split=random"):
        train_b.main(["--dataset", "ml-1m", "--split", "random"])
    assert mlflow.search_runs(search_all_experiments=True).empty  # no half-made training run


def test_lookup_picks_the_latest_finished_prepare_run_with_the_same_data(fresh_tracking: str) -> None:
    temporal_old = log_synthetic_prepare_run(split="temporal", n_ratings=600)
    temporal_new = log_synthetic_prepare_run(split="temporal", n_ratings=600)
    random_split = log_synthetic_prepare_run(split="random", n_ratings=600)
    client = mlflow.MlflowClient()
    unrelated = client.create_run(client.get_run(temporal_new).info.experiment_id).info.run_id
    client.set_terminated(unrelated)
    found = training.resolve_prepare_run(prepare_run="", dataset="", split="", defaults=PREPARE_DEFAULTS)
    assert found == training.PrepareLineage(run_id=temporal_new, dataset="ml-100k", split="temporal")
    assert (
        training.resolve_prepare_run(prepare_run="", dataset="", split="random", defaults=PREPARE_DEFAULTS).run_id
        == random_split
    )
    # An explicit run id wins, and its own data parameters are reported.
    explicit = training.resolve_prepare_run(
        prepare_run=temporal_old, dataset="", split="", defaults=PREPARE_DEFAULTS
    )
    assert explicit == training.PrepareLineage(run_id=temporal_old, dataset="ml-100k", split="temporal")
    with pytest.raises(LineageError, match=r"does not match the requested data: split='random' but the run has"):
        training.resolve_prepare_run(
            prepare_run=temporal_old, dataset="", split="random", defaults=PREPARE_DEFAULTS
        )
    with pytest.raises(LineageError, match="not a 'prepare' run"):
        training.resolve_prepare_run(prepare_run=unrelated, dataset="", split="", defaults=PREPARE_DEFAULTS)


@pytest.mark.e2e
def test_mlflow_run_train_b_finds_its_prepare_run(fresh_tracking: str) -> None:
    prepare_run = log_synthetic_prepare_run(n_ratings=1000)
    command = [
        *(sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "train_b"),
        *("-P", "num_leaves=63", "-P", "n_estimators=30", "--env-manager", "local"),
    ]
    # The store and experiment come from fresh_tracking's MLFLOW_* variables; a stray run or experiment id from
    # another test would redirect (or, with the experiment name, reject) the run.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"]).experiment_id],
        filter_string="tags.`abtest.step` = 'train_b'",
    )
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "train_b"
    # `mlflow run` logged the "" defaults first (shell-quoted, as "''"); the values used are in tags and in
    # effective_params.
    assert run.data.params["prepare_run"] == "''"
    assert run.data.tags[PREPARE_RUN_TAG] == prepare_run
    effective = effective_params(run)
    assert (effective["prepare_run"], effective["split"], effective["seed"]) == (prepare_run, "temporal", "42")
    assert effective["num_leaves"] == "63"
    booster = mlflow.lightgbm.load_model(run.data.tags[MODEL_URI_TAG])
    assert "[num_leaves: 63]" in booster.model_to_string()


def test_a_prepare_run_from_an_older_feature_schema_is_rejected_with_the_fix(
    fresh_tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_run = log_synthetic_prepare_run(n_ratings=600)
    monkeypatch.setattr(schema, "FEATURE_COLUMNS", (*schema.FEATURE_COLUMNS, "new_feature"))
    with pytest.raises(LineageError, match=r"lacks feature columns \['new_feature'\].*mlflow run \. -e prepare"):
        train_a.main(["--prepare_run", prepare_run])
