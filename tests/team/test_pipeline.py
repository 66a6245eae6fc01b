"""The unchanged pipeline against the PostgreSQL-backed server, twice at once, then served from the server.

Two ``mlflow run . -e main`` processes with different parameters start together in one experiment on the server:
one with the default registered names, one with its own. Both must finish with complete, separate lineages
(every step a FINISHED child of its own main, consuming only its own main's upstream runs), artifacts stored
through the server's proxied store, each registered name's aliases pointing at that main's runs, and nothing
written to a local mlruns/ or mlflow.db. Then ``mlflow models serve -m models:/movielens_ctr_router@router``
loads the router from the server and answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from abtest.data.synthetic import write_synthetic_zip
from abtest.tracking.pipeline import PIPELINE
from abtest.tracking.tags import STEP as STEP_TAG
from steps.cli import entry_points
from team.postgres import free_loopback_port
from team.server import wait_until_healthy
from tests.fixtures.team import TeamServer, local_store_leftovers, mlflow_run_command, project_copy

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

EXPERIMENT = "abtest-team"
TINY = {"n_users": 150, "n_items": 120, "n_ratings": 6_000, "seed": 3}
# Small everything: this is a test of plumbing and concurrency, not of model quality.
COMMON = {"split": "random", "n_estimators": "30", "cv_folds": "2", "n_bootstrap": "100", "days": "3"}
MAINS: dict[str, dict[str, str]] = {
    "default": {"seed": "42"},
    "variant": {
        "seed": "7",
        "C": "0.5",
        "model_name": "movielens_ctr_ab_variant",
        "router_model_name": "movielens_ctr_router_variant",
    },
}
NAMES = {
    "default": ("movielens_ctr_ab", "movielens_ctr_router"),
    "variant": ("movielens_ctr_ab_variant", "movielens_ctr_router_variant"),
}


@dataclass(frozen=True)
class MainRun:
    """One finished `mlflow run . -e main` process: its run id, children by step, wall time and output."""

    returncode: int
    run_id: str
    children: dict[str, mlflow.entities.Run]
    wall_s: float
    output: str


def _main_run_id(client: MlflowClient, experiment_id: str, seed: str) -> str:
    runs = client.search_runs(
        [experiment_id], f"tags.{STEP_TAG} = 'main' and params.seed = '{seed}'", max_results=2
    )
    assert len(runs) == 1, f"expected one main run with seed {seed}, found {len(runs)}"
    return runs[0].info.run_id


@pytest.fixture(scope="module")
def server_client(team_server: TeamServer, monkeypatch_module: pytest.MonkeyPatch) -> MlflowClient:
    """An MlflowClient on the team server (this module's in-process calls go there, not to the session SQLite)."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch_module.setenv(name, team_server.url)
    mlflow.set_tracking_uri(team_server.url)
    mlflow.set_registry_uri(team_server.url)
    yield MlflowClient(tracking_uri=team_server.url, registry_uri=team_server.url)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of the project, a cwd outside it, and a tiny synthetic ML-100K zip."""
    root = tmp_path_factory.mktemp("team-pipeline")
    (root / "cwd").mkdir()
    return {
        "project": project_copy(root / "project"),
        "cwd": root / "cwd",
        "zip": write_synthetic_zip(root / "ml-100k.zip", layout="ml-100k", **TINY),
    }


@pytest.fixture(scope="module")
def concurrent_mains(
    team_server: TeamServer, server_client: MlflowClient, workspace: dict[str, Path]
) -> dict[str, MainRun]:
    """Start both mains at the same moment and wait for both."""
    env = {**team_server.client_env(), "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    server_client.create_experiment(EXPERIMENT)  # created once up front, as a team would
    processes, started = {}, {}
    for label, params in MAINS.items():
        command = mlflow_run_command(
            workspace["project"],
            "main",
            {"source": "local", "data_path": str(workspace["zip"]), **COMMON, **params},
        )
        log = (workspace["cwd"] / f"{label}.log").open("w")
        started[label] = time.monotonic()
        processes[label] = (
            subprocess.Popen(command, cwd=workspace["cwd"], env=env, stdout=log, stderr=subprocess.STDOUT),
            log,
        )
    finished: dict[str, MainRun] = {}
    experiment_id = server_client.get_experiment_by_name(EXPERIMENT).experiment_id
    for label, (process, log) in processes.items():
        returncode = process.wait(timeout=1800)
        wall = time.monotonic() - started[label]
        log.close()
        output = (workspace["cwd"] / f"{label}.log").read_text()
        assert returncode == 0, f"main {label} failed:\n{output[-4000:]}"
        run_id = _main_run_id(server_client, experiment_id, MAINS[label]["seed"])
        children = server_client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
        by_step = {child.data.tags.get(STEP_TAG): child for child in children}
        assert len(by_step) == len(children), f"main {label}: a step ran twice: {[c.data.tags for c in children]}"
        finished[label] = MainRun(returncode, run_id, by_step, wall, output)
    print({label: f"{run.wall_s:.0f} s" for label, run in finished.items()})  # wall times in the -s / CI log
    return finished


def _expected_steps() -> set[str]:
    """Every pipeline step that has an entry point in MLproject (main runs exactly those)."""
    available = set(entry_points())
    return {step.entry_point for step in PIPELINE if step.entry_point in available}


def test_both_mains_finish_with_every_step(concurrent_mains: dict[str, MainRun], workspace, server_client) -> None:
    expected = _expected_steps()
    for label, main in concurrent_mains.items():
        assert server_client.get_run(main.run_id).info.status == "FINISHED"
        assert set(main.children) == expected, f"main {label}"
        assert {child.info.status for child in main.children.values()} == {"FINISHED"}


def test_lineages_are_separate(concurrent_mains: dict[str, MainRun]) -> None:
    default, variant = concurrent_mains["default"], concurrent_mains["variant"]
    default_ids = {c.info.run_id for c in default.children.values()}
    variant_ids = {c.info.run_id for c in variant.children.values()}
    assert default_ids.isdisjoint(variant_ids)
    for main in (default, variant):
        own_prepare = main.children["prepare"].info.run_id
        for step in ("train_a", "train_b"):
            assert main.children[step].data.params["prepare_run"] == own_prepare
        assert main.children["evaluate"].data.params["train_a_run"] == main.children["train_a"].info.run_id
        assert main.children["evaluate"].data.params["train_b_run"] == main.children["train_b"].info.run_id
    assert default.children["prepare"].data.params["seed"] == "42"
    assert variant.children["prepare"].data.params["seed"] == "7"
    assert variant.children["train_a"].data.params["C"] == "0.5"


def test_aliases_point_at_each_mains_own_runs(concurrent_mains: dict[str, MainRun], server_client) -> None:
    for label, main in concurrent_mains.items():
        policy_name, router_name = NAMES[label]
        policy_a = server_client.get_model_version_by_alias(policy_name, "PolicyA")
        policy_b = server_client.get_model_version_by_alias(policy_name, "PolicyB")
        router = server_client.get_model_version_by_alias(router_name, "router")
        assert policy_a.run_id == main.children["train_a"].info.run_id, label
        assert policy_b.run_id == main.children["train_b"].info.run_id, label
        assert router.run_id == main.children["router"].info.run_id, label
        assert policy_a.version != policy_b.version


def test_artifacts_went_through_the_servers_proxied_store(
    concurrent_mains: dict[str, MainRun], team_server: TeamServer, server_client
) -> None:
    for main in concurrent_mains.values():
        for step, child in main.children.items():
            assert child.info.artifact_uri.startswith("mlflow-artifacts:/"), (step, child.info.artifact_uri)
        prepare = main.children["prepare"]
        listed = {item.path for item in server_client.list_artifacts(prepare.info.run_id)}
        assert "processed" in listed
        experiment_id, run_id = prepare.info.experiment_id, prepare.info.run_id
        assert (team_server.artifacts_dir / experiment_id / run_id / "artifacts" / "processed").is_dir()
        frame = pd.read_parquet(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="processed/test.parquet")
        )
        assert len(frame) > 0


def test_nothing_was_written_to_a_local_store(concurrent_mains: dict[str, MainRun], workspace) -> None:
    assert local_store_leftovers(workspace["project"], workspace["cwd"]) == []


def test_router_serves_from_the_server(
    concurrent_mains: dict[str, MainRun], team_server: TeamServer, workspace
) -> None:
    port = free_loopback_port()
    log = (workspace["cwd"] / "serve.log").open("w")
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/movielens_ctr_router@router",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workspace["cwd"], env=team_server.client_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process=process, timeout_s=240)
        pairs = {"columns": ["user_id", "item_id"], "data": [[1, 1], [2, 3], [999_999, 5]]}
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_split": pairs}, timeout=60
        )
        assert response.status_code == 200, response.text
        predictions = pd.DataFrame(response.json()["predictions"])
        assert list(predictions["user_id"]) == [1, 2, 999_999]
        assert set(predictions["policy"]) <= {"A", "B"}
        assert predictions["score"].between(0, 1).all()
        assert bool(predictions["cold_user"].iloc[2]) is True
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()
    assert local_store_leftovers(workspace["cwd"]) == []
