"""Runs left RUNNING by a process that is gone (a `main` or a step killed with SIGKILL, a machine that rebooted).

MLflow marks a run FAILED or FINISHED only when its process ends it; a process killed outright leaves its run
RUNNING in the store forever. So every step's run (and main's) records where it runs: the host, the process id and
the process's start (tags :data:`~abtest.tracking.tags.HOST`, :data:`~abtest.tracking.tags.PID`,
:data:`~abtest.tracking.tags.PROCESS_START`, set by :func:`abtest.tracking.lineage.step_run`). The next `main` on
the same host finds the RUNNING runs whose process is gone and marks them KILLED:

- the process id is not alive, or is a zombie (killed, not yet reaped);
- or it is alive but started at another time: the id was reused by an unrelated process (or the machine
  rebooted: the start is recorded with the kernel's boot id);
- or the run never recorded a process (killed while its environment was built, before the step opened its run)
  and its parent run, on this host, is gone or no longer RUNNING.

Runs of other hosts are left alone: from here a live process there cannot be told from a dead one.
The process start is read from ``/proc`` (Linux); elsewhere only the process id is compared.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from abtest.tracking import tags

log = logging.getLogger(__name__)

_PROC = Path("/proc")
# /proc/<pid>/stat after the ")" that closes the command name: field 3 (state) is index 0, 22 (starttime) is 19.
_STATE_FIELD, _START_FIELD = 0, 19


def _boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_start(pid: int) -> str:
    """When process ``pid`` started, as ``<boot id>:<clock ticks since boot>``; "" when it cannot be read."""
    fields = _stat_fields(pid)
    boot = _boot_id()
    if fields is None or not boot:
        return ""
    return f"{boot}:{fields[_START_FIELD]}"


@dataclass(frozen=True)
class ProcessIdentity:
    """Where a run's process runs: host name, process id and start ("" where /proc is not available)."""

    host: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid))

    @classmethod
    def of_run(cls, run: Run) -> ProcessIdentity | None:
        """The process a run recorded, or None when it recorded none (or an unreadable one)."""
        run_tags = run.data.tags
        try:
            return cls(run_tags[tags.HOST], int(run_tags[tags.PID]), run_tags.get(tags.PROCESS_START, ""))
        except (KeyError, ValueError):
            return None

    def tags(self) -> dict[str, str]:
        """The run tags that record this process."""
        return {tags.HOST: self.host, tags.PID: str(self.pid), tags.PROCESS_START: self.start}

    def gone_reason(self) -> str | None:
        """Why this process (on this host) no longer runs, or None when it still does."""
        if not _pid_exists(self.pid):
            return f"process {self.pid} on {self.host} is gone"
        fields = _stat_fields(self.pid)
        if fields is not None and fields[_STATE_FIELD] == "Z":
            return f"process {self.pid} on {self.host} was killed (a zombie not yet reaped)"
        now = process_start(self.pid)
        if self.start and now and now != self.start:
            return f"process {self.pid} on {self.host} is gone (the id now belongs to a process started later)"
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


@dataclass(frozen=True)
class StaleRun:
    """A RUNNING run whose process is gone, and why."""

    run: Run
    reason: str

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.info.run_id

    @property
    def entry_point(self) -> str:
        """The step the run belongs to (its ``abtest.step`` tag, else MLflow's entry point tag)."""
        run_tags = self.run.data.tags
        return run_tags.get(tags.STEP) or run_tags.get("mlflow.project.entryPoint", "")


def find_stale_runs(
    experiment_id: str, *, exclude: frozenset[str] = frozenset(), client: MlflowClient | None = None
) -> list[StaleRun]:
    """The RUNNING runs of ``experiment_id`` started on this host whose process is gone (see the module doc)."""
    client = client or MlflowClient()
    host = socket.gethostname()
    running = {
        run.info.run_id: run
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
        if run.info.run_id not in exclude
    }
    stale: dict[str, StaleRun] = {}
    for run_id, run in running.items():
        identity = ProcessIdentity.of_run(run)
        if identity is not None and identity.host == host and (reason := identity.gone_reason()) is not None:
            stale[run_id] = StaleRun(run, reason)
    for run_id, run in running.items():
        if run_id in stale or ProcessIdentity.of_run(run) is not None:
            continue
        reason = _orphan_reason(run, stale, running, host, client)
        if reason is not None:
            stale[run_id] = StaleRun(run, reason)
    return list(stale.values())


def _orphan_reason(
    run: Run, stale: Mapping[str, StaleRun], running: Mapping[str, Run], host: str, client: MlflowClient
) -> str | None:
    # A step killed before it opened its run recorded no process; its parent (main, on the same host) did.
    parent_id = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
    if not parent_id:
        return None
    if parent_id in stale:
        return f"it recorded no process, and its parent run {parent_id} is gone ({stale[parent_id].reason})"
    parent = running.get(parent_id) or _get_run(client, parent_id)
    if parent is None or parent.data.tags.get(tags.HOST) != host or parent.info.status == "RUNNING":
        return None
    return f"it recorded no process, and its parent run {parent_id} is {parent.info.status}"


def _get_run(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except MlflowException:  # a deleted parent: nothing to compare with
        return None


def mark_killed(stale: StaleRun, *, by_run: str, client: MlflowClient | None = None) -> None:
    """Mark a stale run KILLED, recording why and which run noticed (tag :data:`tags.KILLED_REASON`)."""
    client = client or MlflowClient()
    client.set_tag(stale.run_id, tags.KILLED_REASON, tags.cut(f"{stale.reason}; marked KILLED by run {by_run}"))
    client.set_terminated(stale.run_id, "KILLED")
