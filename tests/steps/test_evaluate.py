"""The `evaluate` step: main() on the session's policies, the report, `mlflow run`, and its parameter checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from abtest.config import PROJECT_DIR
from abtest.evaluation.inputs import resolve_policy, training_run_of
from abtest.evaluation.metrics import all_metrics
from abtest.evaluation.report import SECTIONS
from abtest.tracking.lineage import LineageError
from steps import evaluate
from steps.evaluate import cross_validation_jobs

FAST = ["--n_bootstrap", "200", "--cv_folds", "2"]


@pytest.fixture(scope="module")
def evaluate_run(train_a_run: str, train_b_run: str) -> str:
    """One in-process evaluate run on the session's training runs (small bootstrap, 2 folds)."""
    return evaluate.main(["--train_a_run", train_a_run, "--train_b_run", train_b_run, *FAST])


def test_evaluate_logs_metrics_tags_and_lineage(evaluate_run: str, train_a_run: str, train_b_run: str):
    run = MlflowClient().get_run(evaluate_run)
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["abtest.step"] == "evaluate"
    assert tags["abtest.decision"] in {"B wins", "A wins", "no significant difference"}
    assert tags["abtest.winner"] in {"A", "B", "none"}
    assert metrics["decision.winner_code"] == {"B": 1.0, "none": 0.0, "A": -1.0}[tags["abtest.winner"]]
    assert run.data.params["train_a_run"] == train_a_run and run.data.params["train_b_run"] == train_b_run
    for name in all_metrics(10):
        for key in (f"a.{name}", f"b.{name}", f"diff.{name}"):
            assert key in metrics, key
        assert metrics[f"diff.{name}"] == pytest.approx(metrics[f"b.{name}"] - metrics[f"a.{name}"], abs=1e-9)
        if name == "coverage_at_10":  # a set size: biased under user resampling, so point values only
            assert f"diff.{name}.ci_low" not in metrics and f"a.{name}.ci_low" not in metrics
            continue
        assert metrics[f"diff.{name}.ci_low"] <= metrics[f"diff.{name}.ci_high"]
    assert 0.0 <= metrics["delong.p_value"] <= 1.0
    assert metrics["delong.auc_diff"] == pytest.approx(metrics["diff.auc"], abs=1e-9)
    assert "cv.diff.auc.mean" in metrics and "cv.a.auc.std" in metrics
    # The session's prepare run uses the random split, so the folds are random K-fold, and the run says so.
    assert run.data.params["cv_scheme"] == "random" and tags["abtest.cv_scheme"].startswith("random K-fold")
    # The logged AUC of each policy equals the training run's own test-free view of its model on these rows.
    assert 0.5 < metrics["b.auc"] <= 1.0


def test_report_and_tables_are_artifacts(evaluate_run: str, tmp_path: Path):
    root = Path(
        mlflow.artifacts.download_artifacts(
            run_id=evaluate_run, artifact_path="evaluation", dst_path=str(tmp_path)
        )
    )
    html = (root / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert html.count("data:image/png;base64,") >= 7  # metrics, 4 curves, segments, cross-validation
    assert "<script" not in html and 'src="http' not in html  # self-contained
    for name in (
        "comparison.csv",
        "comparison.json",
        "segments.csv",
        "delong.json",
        "decision.json",
        "cv_folds.csv",
        "cv_summary.csv",
    ):
        assert (root / name).exists(), name
    for plot in ("roc", "precision_recall", "calibration", "lift_gain", "metrics", "cross_validation"):
        assert (root / "plots" / f"{plot}.png").exists(), plot


def test_policies_given_by_model_uri_match_run_ids(evaluate_run: str, train_a_run: str, train_b_run: str):
    client = MlflowClient()
    uri_a = client.get_run(train_a_run).data.tags["abtest.model_uri"]
    uri_b = client.get_run(train_b_run).data.tags["abtest.model_uri"]
    assert training_run_of(uri_a) == train_a_run
    by_uri = evaluate.main(
        ["--policy_a_uri", uri_a, "--policy_b_uri", uri_b, "--n_bootstrap", "200", "--cv_folds", "0"]
    )
    run, reference = client.get_run(by_uri), client.get_run(evaluate_run)
    assert run.data.metrics["a.auc"] == pytest.approx(reference.data.metrics["a.auc"], abs=1e-12)
    assert run.data.metrics["diff.auc.ci_low"] == pytest.approx(reference.data.metrics["diff.auc.ci_low"])
    assert "cv.diff.auc.mean" not in run.data.metrics  # cv_folds=0 disables cross-validation


def test_run_id_and_uri_together_are_rejected(train_a_run: str):
    with pytest.raises(ValueError, match="not both"):
        evaluate.main(["--train_a_run", train_a_run, "--policy_a_uri", "models:/x@PolicyA", "--cv_folds", "0"])


@pytest.mark.e2e
def test_mlflow_run_evaluate_end_to_end(train_a_run: str, train_b_run: str):
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID too; `mlflow run` refuses it together with the name.
    inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env = {**inherited, "PYTHONPATH": str(PROJECT_DIR)}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(PROJECT_DIR),
        "-e",
        "evaluate",
        "--env-manager",
        "local",
        "-P",
        f"train_a_run={train_a_run}",
        "-P",
        f"train_b_run={train_b_run}",
        "-P",
        "n_bootstrap=200",
        "-P",
        "cv_folds=0",  # cross-validation is covered in-process (evaluate_run); here the wiring matters
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    runs = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"]).experiment_id],
        filter_string=f"tags.`abtest.step` = 'evaluate' and params.train_a_run = '{train_a_run}' "
        "and params.n_bootstrap = '200' and params.cv_folds = '0'",
        order_by=["attributes.start_time DESC"],
    )
    assert runs, "no evaluate run with the passed parameters"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "evaluate"
    assert run.data.tags["abtest.decision"] in {"B wins", "A wins", "no significant difference"}
    assert "diff.auc" in run.data.metrics and "diff.auc.ci_low" in run.data.metrics


# --- parameter checks before the run, and which policy's URI failed ----------------------------------------------


def test_negative_cv_folds_is_refused_before_a_run_exists():
    client = MlflowClient()
    experiment = mlflow.tracking.fluent._get_experiment_id()
    before = len(client.search_runs([experiment], max_results=50_000))
    with pytest.raises(ValueError, match=r"cv_folds must be 0 or 1 \(no cross-validation\) or >= 2 folds, got -1"):
        evaluate.main(["--cv_folds", "-1"])
    assert len(client.search_runs([experiment], max_results=50_000)) == before
    assert evaluate.check_cv_folds(0) == 0 and evaluate.check_cv_folds(5) == 5


def test_unknown_model_uri_names_the_policy_and_the_parameter():
    expected = r"policy A: cannot resolve policy_a_uri='models:/nope@PolicyA': .*nope"
    with pytest.raises(LineageError, match=expected):
        resolve_policy("A", model_uri="models:/nope@PolicyA", run_id="")
    with pytest.raises(LineageError, match=r"policy B: cannot resolve policy_b_uri='file:/x'"):
        resolve_policy("B", model_uri="file:/x", run_id="")
    client = MlflowClient()
    experiment = mlflow.tracking.fluent._get_experiment_id()
    before = len(client.search_runs([experiment], max_results=50_000))
    with pytest.raises(LineageError, match=expected):
        evaluate.main(["--policy_a_uri", "models:/nope@PolicyA", "--cv_folds", "0"])
    assert len(client.search_runs([experiment], max_results=50_000)) == before  # no failed run left behind


def test_cv_jobs_zero_means_one_per_available_core_and_negative_is_refused() -> None:
    assert cross_validation_jobs(0) == len(os.sched_getaffinity(0))
    assert cross_validation_jobs(3) == 3
    with pytest.raises(ValueError, match=r"cv_jobs must be >= 0 \(0 = one per available core\), got -1"):
        cross_validation_jobs(-1)
