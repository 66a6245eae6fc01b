"""How `main` starts a step: ``mlflow.projects.run`` as a child of main's active run.

A launcher submits one entry point and returns a :class:`SubmittedStep`: at once (``synchronous=False``), so steps
that do not depend on each other (train_a and train_b) run together, or after it ended when nothing else could
run meanwhile. The run loop (abtest/tracking/pipeline.py) polls what it started and, when one step fails, cancels
the others (their runs KILLED). MLflow does not hand the caller's ``--env-manager`` down to nested runs, so it is
passed explicitly.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import mlflow
from mlflow.entities import RunStatus
from mlflow.environment_variables import MLFLOW_EXPERIMENT_NAME
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.projects.submitted_run import SubmittedRun
from mlflow.tracking import MlflowClient

from abtest.tracking import tags

log = logging.getLogger(__name__)

RUNNING, FINISHED = "RUNNING", "FINISHED"


class StepFailedError(RuntimeError):
    """A step's run did not finish; ``run_id`` is its (FAILED) run when MLflow got as far as creating one.

    ``alongside`` names what happened to the steps that ran at the same time (stopped, failed too, finished), so
    main's error names every outcome, not only the first failure's.
    """

    def __init__(self, entry_point: str, run_id: str | None, cause: str, *, alongside: Sequence[str] = ()) -> None:
        message = f"step {entry_point} failed (run {run_id}): {cause}"
        super().__init__("; ".join([message, *alongside]))
        self.entry_point = entry_point
        self.run_id = run_id
        self.cause = cause
        self.alongside = tuple(alongside)


class SubmittedStep(Protocol):
    """One launched step: its run, whether it is done, its outcome, and a way to stop it."""

    entry_point: str

    @property
    def run_id(self) -> str:
        """The step's run (created before the step's process started)."""

    def done(self) -> bool:
        """True once the step's process has ended."""

    def result(self) -> str:
        """Wait for the step; its run id when it finished, else :class:`StepFailedError`."""

    def cancel(self, reason: str) -> str:
        """Stop the step (its run is marked KILLED unless it ended first); returns the run's final status."""


class Launcher(Protocol):
    """Starts a step and returns at once; raises :class:`StepFailedError` when it cannot start (see
    :func:`mlflow_launcher`; tests pass their own)."""

    def __call__(
        self, entry_point: str, parameters: Mapping[str, str], *, run_name: str | None = None, wait: bool = False
    ) -> SubmittedStep:
        """Submit ``entry_point``; returns at once, or when it has ended if ``wait``."""


class MlflowSubmittedStep:
    """A step started by ``mlflow.projects.run(synchronous=False)``, driven the way ``mlflow run`` drives one."""

    def __init__(self, entry_point: str, submitted: SubmittedRun, *, client: MlflowClient | None = None) -> None:
        self.entry_point = entry_point
        self._submitted = submitted
        self._client = client or MlflowClient()

    @property
    def run_id(self) -> str:
        """The step's run."""
        return self._submitted.run_id

    def done(self) -> bool:
        """True once the step's process has ended."""
        return self._submitted.get_status() != RUNNING

    def result(self) -> str:
        """Wait; the run id when the step succeeded, else :class:`StepFailedError` with the step's own reason."""
        succeeded = self._submitted.wait()
        # A step that ended without closing its run (it failed before opening it, or was killed) leaves it
        # RUNNING: mark it as `mlflow run` would (mlflow.projects._wait_for).
        status = self._set_terminated_if_running(FINISHED if succeeded else "FAILED")
        if succeeded and status == FINISHED:
            return self.run_id
        fallback = f"Run (ID '{self.run_id}') ended {status}"
        raise StepFailedError(self.entry_point, self.run_id, failure_reason(self.run_id, fallback))

    def cancel(self, reason: str) -> str:
        """Stop the step's processes; its run is KILLED (tag :data:`tags.KILLED_REASON`) unless it ended first."""
        if not self.done():
            # The step's `mlflow run` leads its own process group: MLflow's cancel signals the whole group.
            self._submitted.cancel()
        status = self._client.get_run(self.run_id).info.status
        if status == RUNNING:
            self._client.set_tag(self.run_id, tags.KILLED_REASON, tags.cut(reason))
            status = self._set_terminated_if_running("KILLED")
        return status

    def _set_terminated_if_running(self, status: str) -> str:
        current = self._client.get_run(self.run_id).info.status
        if RunStatus.is_terminated(RunStatus.from_string(current)):
            return current
        self._client.set_terminated(self.run_id, status)
        return status


def mlflow_launcher(*, project_uri: str, env_manager: str, experiment_id: str) -> Launcher:
    """A launcher that runs an entry point with ``mlflow.projects.run`` as a child of the active run.

    The child is nested because ``mlflow.projects.run`` reads the active (main's) run when it creates the
    child's; ``run_name`` names the child (MLflow sets tag ``mlflow.runName`` right after creating it).

    ``wait=False`` submits with ``synchronous=False``: MLflow then starts ``mlflow run --run-id <id>`` as a
    subprocess in a process group of its own, which costs one more Python start importing MLflow (about 3 s of CPU
    on these machines, which compile every import); ``wait=True`` runs the step in this process's group to its end,
    as ``mlflow run`` does. The run loop waits whenever nothing else could run meanwhile.
    """

    def launch(
        entry_point: str, parameters: Mapping[str, str], *, run_name: str | None = None, wait: bool = False
    ) -> SubmittedStep:
        try:
            with _experiment_name_unset():
                submitted = mlflow.projects.run(
                    project_uri,
                    entry_point=entry_point,
                    parameters=dict(parameters),
                    env_manager=env_manager,
                    experiment_id=experiment_id,
                    run_name=run_name,
                    synchronous=wait,
                )
        except ExecutionException as exc:
            # A waited-for step that failed, or one that could not start (its environment, its parameters).
            found = re.search(r"Run \(ID '([0-9a-f]+)'\)", str(exc))
            run_id = found.group(1) if found else None
            raise StepFailedError(entry_point, run_id, failure_reason(run_id, str(exc))) from exc
        return MlflowSubmittedStep(entry_point, submitted)

    return launch


@contextmanager
def _experiment_name_unset() -> Iterator[None]:
    # The asynchronous `mlflow run` subprocess inherits this environment plus MLFLOW_EXPERIMENT_ID, and refuses
    # both an experiment name and an id; the experiment is given by id.
    name = os.environ.pop(MLFLOW_EXPERIMENT_NAME.name, None)
    try:
        yield
    finally:
        if name is not None:
            os.environ[MLFLOW_EXPERIMENT_NAME.name] = name


def failure_reason(run_id: str | None, fallback: str, *, client: MlflowClient | None = None) -> str:
    """Why a step's run failed: its :data:`abtest.tracking.tags.ERROR` ("<Type>: <message>"), else ``fallback``.

    A step whose ``main`` is not decorated with :func:`~abtest.tracking.lineage.records_failure` and that failed
    before opening its run (a parameter check) has no such tag; the reason is then only in its console output, and
    the fallback says so.
    """
    if run_id:
        try:
            reason = (client or MlflowClient()).get_run(run_id).data.tags.get(tags.ERROR)
        except MlflowException:
            reason = None
        if reason:
            return reason
    return f"{fallback} (the step recorded no {tags.ERROR} tag: the cause is in its output above)"
