"""Runs left RUNNING by a process that is gone (abtest/tracking/stale.py), on a real store with real processes."""

from __future__ import annotations

import socket
import subprocess
import sys

import mlflow
from mlflow.tracking import MlflowClient

from abtest.tracking.lineage import step_run
from abtest.tracking.stale import ProcessIdentity, find_stale_runs, mark_killed, process_start


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running_run(experiment_id: str, identity: ProcessIdentity | None, **extra: str) -> str:
    run_tags = {**(identity.tags() if identity else {}), **extra}
    return MlflowClient().create_run(experiment_id, tags=run_tags).info.run_id


def test_step_run_records_its_process(fresh_tracking: str) -> None:
    with step_run("prepare") as run:
        pass
    recorded = ProcessIdentity.of_run(MlflowClient().get_run(run.info.run_id))
    assert recorded == ProcessIdentity.current()
    assert recorded.host == socket.gethostname()
    assert recorded.start == process_start(recorded.pid) != ""


def test_runs_whose_process_is_gone_are_found_and_marked_killed(fresh_tracking: str) -> None:
    client = MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("abtest-fresh").experiment_id
    host, me = socket.gethostname(), ProcessIdentity.current()
    dead_pid = _dead_pid()
    dead = _running_run(experiment_id, ProcessIdentity(host, dead_pid, "x:1"), **{"abtest.step": "main"})
    reused = _running_run(experiment_id, ProcessIdentity(host, me.pid, "another-boot:1"))
    alive = _running_run(experiment_id, me)
    elsewhere = _running_run(experiment_id, ProcessIdentity("another-host", dead_pid, ""))
    # A step killed before it opened its run recorded no process: its parent's decides.
    orphan = _running_run(experiment_id, None, **{"mlflow.parentRunId": dead, "abtest.step": "evaluate"})
    of_alive = _running_run(experiment_id, None, **{"mlflow.parentRunId": alive})
    finished = _running_run(experiment_id, ProcessIdentity(host, dead_pid, ""))
    client.set_terminated(finished, "FINISHED")

    stale = {found.run_id: found for found in find_stale_runs(experiment_id, client=client)}
    assert set(stale) == {dead, reused, orphan}
    assert stale[dead].reason == f"process {dead_pid} on {host} is gone"
    assert stale[dead].entry_point == "main"
    assert stale[reused].reason.endswith("(the id now belongs to a process started later)")
    parent_gone = f"its parent run {dead} is gone ({stale[dead].reason})"
    assert stale[orphan].reason == f"it recorded no process, and {parent_gone}"
    assert {alive, elsewhere, of_alive}.isdisjoint(stale)

    mark_killed(stale[dead], by_run="main-now", client=client)
    killed = client.get_run(dead)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["abtest.killed_reason"] == f"{stale[dead].reason}; marked KILLED by run main-now"
    assert dead not in {found.run_id for found in find_stale_runs(experiment_id, client=client)}
    # The orphan of a parent already marked KILLED is still found (its parent is no longer RUNNING).
    assert orphan in {found.run_id for found in find_stale_runs(experiment_id, client=client)}
