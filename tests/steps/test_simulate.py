"""The `simulate` step on the real registered router (session fixtures), in process and via `mlflow run`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from ab_router.records import DECISIONS, IMPRESSIONS, OUTCOMES
from ab_router.sinks import read_jsonl_file, table_files
from abtest.config import PROJECT_DIR
from abtest.tracking.lineage import load_prepared

FAST = ["--days", "3", "--n_unseen", "10", "--k", "5"]


@pytest.fixture(scope="module")
def router(request: pytest.FixtureRequest) -> str:
    """The session's `router` run id (router engineer's fixture); skipped until that fixture exists."""
    try:
        return request.getfixturevalue("router_run")
    except pytest.FixtureLookupError:
        pytest.skip("router_run fixture (tests/fixtures/router.py) is not registered")


def _artifacts(run_id: str) -> set[str]:
    return {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "readout")}


def test_simulate_synthetic_through_the_router_run(router: str):
    from steps import simulate

    run_id = simulate.main(["--router_run", router, "--environment", "synthetic", *FAST])
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["abtest.step"] == "simulate"
    prepare_run = run.data.tags["abtest.prepare_run"]
    test_users = load_prepared(prepare_run).test["user_id"].nunique()
    metrics = run.data.metrics
    assert metrics["users_A"] + metrics["users_B"] == test_users
    assert metrics["impressions_A"] + metrics["impressions_B"] == 5 * test_users
    assert 0 <= metrics["true_ctr_A"] <= 1 and 0 <= metrics["true_ctr_B"] <= 1
    assert "abtest.decision" in run.data.tags
    assert {
        "readout/readout.html",
        "readout/readout.json",
        "readout/daily.csv",
        "readout/arms.csv",
        "readout/guardrails.csv",
        "readout/impressions.parquet",
    } <= _artifacts(run_id)
    assert metrics["records_impressions"] == metrics["impressions_A"] + metrics["impressions_B"]
    assert metrics["records_outcomes"] == metrics["clicks_A"] + metrics["clicks_B"]


def test_simulate_leaves_the_records_of_its_traffic_written_by_the_routers_own_log(router: str, tmp_path):
    from steps import simulate

    run_id = simulate.main(["--router_run", router, "--environment", "synthetic", *FAST])
    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="records", dst_path=str(tmp_path))
    )
    tables = {
        table: [row for path in table_files(local, kind) for row in read_jsonl_file(path)[0]]
        for table, kind in (("decisions", DECISIONS), ("impressions", IMPRESSIONS), ("outcomes", OUTCOMES))
    }
    assert {table: len(rows) for table, rows in tables.items()} == {
        table: int(metrics[f"records_{table}"]) for table in tables
    }
    decisions = tables["decisions"]
    version = mlflow.MlflowClient().get_run(router).data.tags["abtest.router_version"]
    # written by the in-process router's decision log: its identity, its own latency, this process as writer
    assert {d["router_version"] for d in decisions} == {version}
    assert all(d["writer"].endswith(f":{os.getpid()}") and d["latency_ms"] > 0 for d in decisions)
    assert not any(d["forced"] for d in decisions)  # the ground truth's forced scoring is not traffic
    assert {(i["request_id"], i["item_id"]) for i in tables["impressions"]} <= {
        (d["request_id"], d["item_id"]) for d in decisions
    }


def test_simulate_replay_through_the_alias_is_the_same_router(router: str):
    from steps import simulate

    run_id = simulate.main(["--environment", "replay", *FAST])
    run = mlflow.MlflowClient().get_run(run_id)
    version = mlflow.MlflowClient().get_run(router).data.tags["abtest.router_version"]
    assert run.data.tags["abtest.router_uri"].endswith(f"/{version}")
    assert run.data.metrics["srm_flagged"] in (0.0, 1.0)
    assert "true_ctr_A" not in run.data.metrics  # replay has no ground truth


@pytest.mark.e2e
def test_mlflow_run_simulate_entry_point(router: str):
    before = {r.info.run_id for r in mlflow.search_runs(output_format="list")}
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "simulate", "--env-manager", "local"]
    command += ["-P", "days=2", "-P", "n_unseen=5", "-P", "k=3", "-P", "environment=synthetic"]
    # The session store's experiment by name only: `mlflow run` refuses both a name and an id.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    new = [r for r in mlflow.search_runs(output_format="list") if r.info.run_id not in before]
    assert len(new) == 1 and new[0].info.status == "FINISHED"
    assert new[0].data.params["environment"] == "synthetic" and new[0].data.params["days"] == "2"
    assert "cuped_variance_reduction" in new[0].data.metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
def test_simulate_through_the_served_router_records_its_answers_and_reads_out_the_same(router: str, tmp_path):
    from steps import simulate

    version = mlflow.MlflowClient().get_run(router).data.tags["abtest.router_version"]
    port, server_log = _free_port(), tmp_path / "serve.log"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/movielens_ctr_router/{version}"]
    command += ["-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"]
    env = {k: v for k, v in os.environ.items() if k != "ABTEST_DECISION_LOG"}  # the server records nothing itself
    with server_log.open("w") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server_log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        design = ["--router_run", router, "--environment", "synthetic", *FAST]
        served = simulate.main([*design, "--endpoint_url", f"http://127.0.0.1:{port}"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    in_process = simulate.main(design)
    client = mlflow.MlflowClient()
    served_run, local_run = client.get_run(served), client.get_run(in_process)
    # the same traffic through the same router version: the same records and the same readout numbers
    for name in ("records_decisions", "records_impressions", "records_outcomes", "users_A", "users_B", "clicks_B"):
        assert served_run.data.metrics[name] == local_run.data.metrics[name], name
    assert served_run.data.tags["abtest.winner"] == local_run.data.tags["abtest.winner"]
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=served, artifact_path="records", dst_path=str(tmp_path))
    )
    decisions = [row for path in table_files(local, DECISIONS) for row in read_jsonl_file(path)[0]]
    # written by simulate from the answers (this process), with the version the answers came from
    assert {d["router_version"] for d in decisions} == {version}
    assert all(d["writer"].endswith(f":{os.getpid()}") for d in decisions)


def test_analyze_reads_a_simulate_runs_records_into_the_same_readout(router: str):
    from steps import analyze, simulate

    simulated = simulate.main(["--router_run", router, "--environment", "synthetic", *FAST])
    analyzed = analyze.main(["--simulate_run", simulated, "--router_run", router])
    client = mlflow.MlflowClient()
    simulate_run, analyze_run = client.get_run(simulated), client.get_run(analyzed)
    assert analyze_run.info.status == "FINISHED"
    for tag in ("abtest.decision", "abtest.winner", "abtest.healthy", "abtest.guardrails_held"):
        assert analyze_run.data.tags[tag] == simulate_run.data.tags[tag], tag
    shared = set(analyze_run.data.metrics) & set(simulate_run.data.metrics)
    assert {"ctr_lift_abs", "srm_p_value", "users_A", "clicks_B"} <= shared
    assert {name: analyze_run.data.metrics[name] for name in shared} == {
        name: simulate_run.data.metrics[name] for name in shared
    }
