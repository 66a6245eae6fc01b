"""`mlflow run . -e main --env-manager local` end to end on synthetic data: one tree, correct reuse.

The tests run in order on one store: a cold run, an identical run (reuses everything), a run after a step was
marked FAILED (reruns it), a run with another num_leaves (reruns train_b and what follows it), a run the user
named (``--run-name``), and a main killed with SIGKILL during evaluate, then run again (the killed runs marked
KILLED, evaluate rerun, the finished steps reused).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from abtest.tracking.pipeline import active_steps
from steps.cli import entry_points
from tests.fixtures.pipeline_runs import FAST_PARAMS, Snapshot, Store, latest_main, outcomes, run_main, step_runs

pytestmark = pytest.mark.e2e

ALL_STEPS = [step.entry_point for step in active_steps(entry_points())]


@pytest.fixture(scope="module")
def params(synthetic_ml100k_zip: Path) -> dict[str, str]:
    return {"source": "local", "data_path": str(synthetic_ml100k_zip), **FAST_PARAMS}


@pytest.fixture(scope="module")
def first_main(project_snapshot: Snapshot, main_store: Store, params: dict[str, str]) -> str:
    run_main(project_snapshot.path, main_store, params)
    return latest_main(main_store).info.run_id


def test_cold_run_builds_one_tree_of_finished_steps(
    first_main: str, main_store: Store, project_snapshot: Snapshot, params: dict[str, str]
) -> None:
    main_run = main_store.client.get_run(first_main)
    children = step_runs(main_store, first_main)
    assert main_run.info.status == "FINISHED"
    assert sorted(children) == sorted(ALL_STEPS)
    assert {name: run.info.status for name, run in children.items()} == dict.fromkeys(ALL_STEPS, "FINISHED")
    assert outcomes(main_run) == dict.fromkeys(ALL_STEPS, "ran")
    for name, run in children.items():
        assert main_run.data.tags[f"abtest.steps.{name}.run_id"] == run.info.run_id
        assert run.data.tags["mlflow.source.git.commit"] == project_snapshot.commit
        assert run.data.tags["abtest.code_version"] == project_snapshot.commit
        assert "mlflow.project.env" not in run.data.tags  # --env-manager local reached the children

    # train_a and train_b are independent in the DAG: they ran at the same time.
    train_a = children["train_a"].info
    assert train_a.start_time < children["train_b"].info.end_time
    assert children["train_b"].info.start_time < train_a.end_time

    # Runs named after the pipeline and each step's user-set parameters, not MLflow's generated names.
    assert main_run.info.run_name == "main ml-100k temporal"
    assert children["prepare"].info.run_name == f"prepare source=local data_path={Path(params['data_path']).name}"
    assert children["train_a"].info.run_name == "train_a"
    assert children["train_b"].info.run_name == "train_b n_estimators=30"
    assert children["evaluate"].info.run_name == "evaluate n_bootstrap=50 cv_folds=2"

    # Every run recorded its process, so a later main can tell one whose process was killed.
    for run in (main_run, *children.values()):
        assert run.data.tags["abtest.host"] == socket.gethostname()
        assert int(run.data.tags["abtest.pid"]) > 0

    # Upstream run ids travel as parameters; user parameters reach the steps that declare them.
    prepare, train_b = children["prepare"].info.run_id, children["train_b"].data
    assert train_b.params["prepare_run"] == prepare
    assert train_b.params["n_estimators"] == "30"
    assert children["evaluate"].data.params["cv_folds"] == "2"
    assert children["evaluate"].data.params["train_b_run"] == children["train_b"].info.run_id

    # Step table artifact and summary tags copied from the children.
    table = pd.read_csv(
        io.StringIO(mlflow.artifacts.load_text(f"{main_run.info.artifact_uri}/pipeline/steps.csv"))
    )
    assert table["entry_point"].tolist() == ALL_STEPS
    assert set(table["outcome"]) == {"ran"}
    assert main_run.data.metrics["steps_ran"] == len(ALL_STEPS)
    assert main_run.data.tags["abtest.evaluate.decision"] == children["evaluate"].data.tags["abtest.decision"]
    assert main_run.data.tags["abtest.router.router_version"] == "1"


def test_cold_run_sets_aliases_and_serves_a_prediction(
    first_main: str, main_store: Store, project_snapshot: Snapshot
) -> None:
    client = main_store.client
    policy_a = client.get_model_version_by_alias("movielens_ctr_ab", "PolicyA")
    policy_b = client.get_model_version_by_alias("movielens_ctr_ab", "PolicyB")
    main_tags = client.get_run(first_main).data.tags
    assert (str(policy_a.version), str(policy_b.version)) == (
        main_tags["abtest.register.policy_a_version"],
        main_tags["abtest.register.policy_b_version"],
    )
    assert str(client.get_model_version_by_alias("movielens_ctr_router", "router").version) == "1"

    # A fresh process in the snapshot, as a server would load it (this process may hold another ab_router).
    served = pd.read_json(io.StringIO(_predict_in_subprocess(main_store, project_snapshot.path, PREDICT_ROWS)))
    assert served["user_id"].tolist() == PREDICT_ROWS["user_id"]
    assert set(served["policy"]) <= {"A", "B"}
    assert served["score"].between(0, 1).all()
    assert served["cold_user"].iloc[-1] and served["cold_item"].iloc[-1]  # unknown ids: defaults, flagged


PREDICT_ROWS = {"user_id": [1, 2, 3, 10**9], "item_id": [1, 2, 3, 10**9]}
_PREDICT = """
import json, sys
import mlflow, pandas as pd
router = mlflow.pyfunc.load_model("models:/movielens_ctr_router@router")
rows = pd.DataFrame(json.loads(sys.argv[1]), dtype="int64")
print(router.predict(rows).to_json(orient="records"))
"""


def _predict_in_subprocess(store: Store, cwd: Path, rows: dict[str, list[int]]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _PREDICT, json.dumps(rows)],
        cwd=cwd,
        env=store.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_identical_run_creates_no_step_runs(first_main: str, main_store: Store, project_snapshot, params) -> None:
    before = {run.info.run_id for run in main_store.runs()}
    run_main(project_snapshot.path, main_store, params)
    new = [run for run in main_store.runs() if run.info.run_id not in before]
    assert [run.data.tags["mlflow.project.entryPoint"] for run in new] == ["main"]
    second = new[0]
    assert outcomes(second) == dict.fromkeys(ALL_STEPS, "reused")
    first_children = step_runs(main_store, first_main)
    for name in ALL_STEPS:
        assert second.data.tags[f"abtest.steps.{name}.run_id"] == first_children[name].info.run_id
    assert second.data.metrics["steps_reused"] == len(ALL_STEPS)


def test_failed_step_is_rerun_not_reused(first_main: str, main_store: Store, project_snapshot, params) -> None:
    simulate = step_runs(main_store, first_main)["simulate"]
    main_store.client.set_terminated(simulate.info.run_id, "FAILED")  # as if it had crashed
    run_main(project_snapshot.path, main_store, params)
    third = latest_main(main_store)
    # analyze reads simulate's records: a new simulate run is a new upstream, so analyze runs again too.
    assert outcomes(third) == {**dict.fromkeys(ALL_STEPS, "reused"), "simulate": "ran", "analyze": "ran"}
    reran = step_runs(main_store, third.info.run_id)
    rerun = reran["simulate"]
    assert rerun.info.status == "FINISHED"
    assert rerun.info.run_id != simulate.info.run_id
    assert reran["analyze"].data.params["simulate_run"] == rerun.info.run_id


def test_num_leaves_reruns_train_b_and_downstream_only(main_store: Store, project_snapshot, params) -> None:
    run_main(project_snapshot.path, main_store, {**params, "num_leaves": "63", "until": "evaluate"})
    fourth = latest_main(main_store)
    assert outcomes(fourth) == {"prepare": "reused", "train_a": "reused", "train_b": "ran", "evaluate": "ran"}
    children = step_runs(main_store, fourth.info.run_id)
    assert sorted(children) == ["evaluate", "train_b"]
    assert children["train_b"].data.params["num_leaves"] == "63"
    assert children["evaluate"].data.params["train_b_run"] == children["train_b"].info.run_id


def test_a_run_name_the_user_gave_is_kept(main_store: Store, project_snapshot, params) -> None:
    command = [sys.executable, "-m", "mlflow", "run", str(project_snapshot.path), "-e", "main"]
    command += ["--env-manager", "local", "--run-name", "nightly check", "-P", "until=prepare"]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    result = subprocess.run(command, cwd=main_store.root, env=main_store.env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    named = latest_main(main_store)
    assert named.info.run_name == "nightly check"
    assert outcomes(named) == {"prepare": "reused"}


def test_main_killed_during_a_step_is_marked_killed_and_resumed(
    main_store: Store, project_snapshot, params
) -> None:
    killed_params = {**params, "num_leaves": "15", "until": "evaluate"}
    command = [sys.executable, "-m", "mlflow", "run", str(project_snapshot.path), "-e", "main"]
    command += ["--env-manager", "local"]
    for name, value in killed_params.items():
        command += ["-P", f"{name}={value}"]
    before = {run.info.run_id for run in main_store.runs()}
    # Its own session, so the SIGKILL reaches main and the step it runs, as a killed terminal would.
    process = subprocess.Popen(
        command,
        cwd=main_store.root,
        env=main_store.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    evaluate = _wait_for_running_step(main_store, "evaluate", before, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    killed_main_id = evaluate.data.tags["mlflow.parentRunId"]
    assert main_store.client.get_run(evaluate.info.run_id).info.status == "RUNNING"  # what SIGKILL leaves

    run_main(project_snapshot.path, main_store, killed_params)
    resumed = latest_main(main_store)
    for stale_id in (killed_main_id, evaluate.info.run_id):
        stale = main_store.client.get_run(stale_id)
        assert stale.info.status == "KILLED"
        assert stale.data.tags["abtest.killed_reason"].endswith(f"marked KILLED by run {resumed.info.run_id}")
    assert set(resumed.data.tags["abtest.stale_runs"].split(",")) == {killed_main_id, evaluate.info.run_id}
    assert outcomes(resumed) == {"prepare": "reused", "train_a": "reused", "train_b": "reused", "evaluate": "ran"}
    rerun = step_runs(main_store, resumed.info.run_id)["evaluate"]
    assert rerun.info.status == "FINISHED"
    table = pd.read_csv(
        io.StringIO(mlflow.artifacts.load_text(f"{resumed.info.artifact_uri}/pipeline/steps.csv"))
    ).set_index("entry_point")
    assert table.loc["evaluate", "reason"] == (
        f"stale run {evaluate.info.run_id} marked KILLED (its process was gone)"
    )
    # train_b finished inside the killed main: the resumed main reused that run.
    killed_children = step_runs(main_store, killed_main_id)
    assert resumed.data.tags["abtest.steps.train_b.run_id"] == killed_children["train_b"].info.run_id


def _wait_for_running_step(store: Store, entry: str, before: set[str], process: subprocess.Popen, timeout=900):
    """The new run of ``entry`` once its process has recorded itself (tag abtest.pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "main ended before its step could be killed"
        for run in store.runs(f"tags.`mlflow.project.entryPoint` = '{entry}' and attributes.status = 'RUNNING'"):
            if run.info.run_id not in before and "abtest.pid" in run.data.tags:
                return run
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no RUNNING {entry} run within {timeout} s")
