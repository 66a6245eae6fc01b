"""The `analyze` step: parameter checks, the plan's override rule, and `mlflow run . -e analyze` on a fixture
records directory in a temporary SQLite store, with exact assertions on tags, metrics, histories and artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from abtest.config import PROJECT_DIR
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.experiment import PlanOverrideError
from abtest.experiment.readout.page import FILES
from abtest.tracking import tags
from steps import analyze
from steps.cli import parse_params
from tests.fixtures.experiment_records import RecordsSpec, write_experiment_records

ROUTER_NAME = "analyze_test_router"
PLAN = AnalysisPlan(planned_days=7)


def _register_router(*, plan: AnalysisPlan | None, salt: str, alias: str) -> str:
    """A router version carrying only what analyze reads (tags), no model: analyze never loads the router."""
    client = MlflowClient()
    if not client.search_registered_models(f"name = '{ROUTER_NAME}'"):
        client.create_registered_model(ROUTER_NAME)
    version_tags = {tags.SALT: salt, tags.SPLIT: "0.5"}
    if plan is not None:
        version_tags[tags.ANALYSIS_PLAN] = plan.to_json()
    version = client.create_model_version(ROUTER_NAME, source="file:///nonexistent-router", tags=version_tags)
    client.set_registered_model_alias(ROUTER_NAME, alias, version.version)
    return str(version.version)


@pytest.fixture
def experiment(tmp_path: Path, fresh_tracking: str):
    """A registered router version and records of it: a planted +20% CTR lift over 7 days."""
    version = _register_router(plan=PLAN, salt="exp-a", alias="analyzed")
    spec = RecordsSpec(
        n_users=3000, days=7, ctr_a=0.05, ctr_b=0.06, router_name=ROUTER_NAME, router_version=version, salt="exp-a"
    )
    written = write_experiment_records(tmp_path / "records", spec)
    return version, written


def _params(records: Path, *extra: str):
    return parse_params(
        "analyze", ["--records", str(records), "--router_uri", f"models:/{ROUTER_NAME}@analyzed", *extra]
    )


def test_check_params_refuses_bad_values_naming_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="parameter primary_metric must be"):
        analyze.check_params(_params(tmp_path, "--primary_metric", "revenue"))
    with pytest.raises(ValueError, match="parameter override_plan must be one of"):
        analyze.check_params(_params(tmp_path, "--override_plan", "yes please"))
    with pytest.raises(ValueError, match="parameter start must be an ISO 8601 time"):
        analyze.check_params(_params(tmp_path, "--start", "yesterday"))
    with pytest.raises(ValueError, match="the window must end after it starts"):
        analyze.check_params(_params(tmp_path, "--start", "2026-11-03", "--end", "2026-11-02"))
    with pytest.raises(ValueError, match="no such directory"):
        analyze.check_params(_params(tmp_path / "missing"))
    assert analyze.parse_time("start", "2026-11-02T01:00:00+01:00").isoformat() == "2026-11-02T00:00:00+00:00"


def test_another_primary_metric_is_refused_then_accepted_with_override(experiment):
    _, written = experiment
    with pytest.raises(PlanOverrideError, match="differs from the planned primary metric 'ctr'"):
        analyze.main(_params_argv(written.directory, "--primary_metric", "clicks_per_user"))
    run_id = analyze.main(
        _params_argv(written.directory, "--primary_metric", "clicks_per_user", "--override_plan", "true")
    )
    run = MlflowClient().get_run(run_id)
    assert run.data.tags[tags.PLAN_OVERRIDDEN] == "true"
    assert run.data.tags[tags.PRIMARY_METRIC] == "clicks_per_user"
    assert "The primary metric was changed after the plan" in run.data.tags[tags.DECISION]


def _params_argv(records: Path, *extra: str) -> list[str]:
    return ["--records", str(records), "--router_uri", f"models:/{ROUTER_NAME}@analyzed", *extra]


def test_mlflow_run_analyze_logs_the_readout(experiment):
    version, written = experiment
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "analyze", "--env-manager", "local"]
    command += ["-P", f"records={written.directory}", "-P", f"router_uri=models:/{ROUTER_NAME}@analyzed"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = mlflow.search_runs(output_format="list", filter_string=f"tags.{tags.STEP} = 'analyze'")
    assert run.info.status == "FINISHED"
    run_tags, metrics = run.data.tags, run.data.metrics
    assert run_tags[tags.WINNER] == "B"
    assert run_tags[tags.HEALTHY] == "true" and run_tags[tags.HEALTH_FAILURES] == ""
    assert run_tags[tags.GUARDRAILS_HELD] == "true"
    assert run_tags[tags.PRIMARY_METRIC] == "ctr" and run_tags[tags.PLAN_OVERRIDDEN] == "false"
    assert run_tags[tags.ROUTER_VERSION] == version
    assert run_tags[tags.ROUTER_URI] == f"models:/{ROUTER_NAME}/{version}"
    assert run_tags[tags.DECISION].startswith("Ship policy B: it raises CTR")
    assert json.loads(run_tags[tags.ANALYSIS_PLAN]) == json.loads(PLAN.to_json())
    assert run_tags[f"{tags.RESOLVED_PREFIX}salt"] == "exp-a"  # "" resolved from the router version
    assert metrics["healthy"] == 1.0 and metrics["days_observed"] == 7.0
    truth = written.spec.ctr_b - written.spec.ctr_a
    assert metrics["ctr_lift_abs_ci_low"] <= truth <= metrics["ctr_lift_abs_ci_high"]
    assert metrics["ctr_prob_b_better"] > 0.99
    history = MlflowClient().get_metric_history(run.info.run_id, "daily_ctr_lift_abs")
    assert sorted(m.step for m in history) == list(range(7))
    assert [
        m.step for m in MlflowClient().get_metric_history(run.info.run_id, "daily_sequential_p_value")
    ] == list(range(7))
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "readout")}
    assert artifacts == {f"readout/{name}" for name in FILES}


def test_unhealthy_records_say_do_not_trust(tmp_path, fresh_tracking):
    version = _register_router(plan=None, salt="exp-b", alias="analyzed")
    spec = RecordsSpec(
        n_users=400, days=3, router_name=ROUTER_NAME, router_version=version, salt="exp-b", both_arms_users=2
    )
    written = write_experiment_records(tmp_path / "records", spec)
    run = MlflowClient().get_run(analyze.main(_params_argv(written.directory)))
    assert run.data.tags[tags.HEALTHY] == "false"
    assert "users_in_both_arms" in run.data.tags[tags.HEALTH_FAILURES].split(",")
    assert run.data.tags[tags.DECISION].startswith("Do not trust this result")
    plan = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/readout/readout.json"))["plan_note"]
    assert "records no analysis plan: the defaults of AnalysisPlan() are used" in plan


def test_check_params_refuses_a_bad_engine_setting_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"parameter engine must be one of \['duckdb', 'spark'\], got 'pandas'"):
        analyze.check_params(_params(tmp_path, "--engine", "pandas"))
    with pytest.raises(
        ValueError, match="tables:<database> names tables in a Spark catalog; it needs engine=spark"
    ):
        analyze.check_params(_params(Path("tables:main.abtest")))
    with pytest.raises(ValueError, match=r"spark_conf must be key=value pairs.*got entry 'spark\.driver"):
        analyze.check_params(_params(tmp_path, "--engine", "spark", "--spark_conf", "spark.driver.memory"))
    analyze.check_params(_params(Path("tables:main.abtest"), "--engine", "spark"))  # checked when it runs
    analyze.check_params(_params("s3a://bucket/records", "--engine", "spark"))


def _readout_json(run_id: str, tmp_path: Path) -> dict:
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="readout/readout.json", dst_path=tmp_path
    )
    return json.loads(Path(local).read_text())


@pytest.mark.e2e
@pytest.mark.spark
def test_mlflow_run_analyze_on_spark_gives_the_duckdb_readout_exactly(experiment, spark, tmp_path):
    # spark (the fixture) is not used by the run, which starts its own session: requesting it makes a machine
    # without Java skip (or, in CI, fail) here with the reason rather than in the subprocess.
    _, written = experiment
    duckdb_run = MlflowClient().get_run(analyze.main(_params_argv(written.directory)))
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "analyze", "--env-manager", "local"]
    command += ["-P", f"records={written.directory}", "-P", f"router_uri=models:/{ROUTER_NAME}@analyzed"]
    command += [
        "-P",
        "engine=spark",
        "-P",
        "spark_master=local[2]",
        "-P",
        "spark_conf=spark.sql.shuffle.partitions=4",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    [spark_run] = [
        run
        for run in mlflow.search_runs(output_format="list", filter_string=f"tags.{tags.STEP} = 'analyze'")
        if run.data.params.get("engine") == "spark"
    ]
    assert spark_run.info.status == "FINISHED"
    assert spark_run.data.metrics == duckdb_run.data.metrics  # every headline metric, exactly
    assert spark_run.data.metrics["healthy"] == 1.0 and spark_run.data.tags[tags.WINNER] == "B"
    readout_tags = [tags.DECISION, tags.WINNER, tags.HEALTHY, tags.HEALTH_FAILURES, tags.GUARDRAILS_HELD]
    assert {t: spark_run.data.tags[t] for t in readout_tags} == {t: duckdb_run.data.tags[t] for t in readout_tags}
    client = MlflowClient()
    for name in ("daily_ctr_lift_abs", "daily_sequential_p_value"):
        histories = [
            [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
            for run in (spark_run, duckdb_run)
        ]
        assert histories[0] == histories[1] and len(histories[0]) == 7
    assert _readout_json(spark_run.info.run_id, tmp_path / "s") == _readout_json(
        duckdb_run.info.run_id, tmp_path / "d"
    )
