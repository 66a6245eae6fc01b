"""What `register` registers, checked before any version or alias changes: each arm's training run, the prepare
run both were trained on, and the evaluate run (if any) whose decision is copied onto the versions."""

from __future__ import annotations

import logging

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ab_router.arms import EXPERIMENT_ARMS, policy_arm
from abtest.tracking import lineage, tags
from abtest.tracking.lineage import (
    LineageError,
    current_experiment_id,
    resolve_upstream_run,
    run_parameter,
)
from abtest.tracking.params import effective_params

log = logging.getLogger(__name__)


def resolve_training_run(client: MlflowClient, arm: str, run_id: str) -> Run:
    """The training run of ``arm``: ``run_id`` checked, or the latest FINISHED run of its training step."""
    step = policy_arm(arm).train_entry_point
    resolved = resolve_upstream_run(step, run_id, {}, how_to_make=f"mlflow run . -e {step}")
    return client.get_run(resolved)


def prepare_run_of(client: MlflowClient, training_run: Run) -> Run:
    """The prepare run a training run read (:func:`abtest.tracking.lineage.prepare_run_of`), as a run."""
    return client.get_run(lineage.prepare_run_of(training_run))


def evaluate_run_of(client: MlflowClient, run_id: str, training_runs: dict[str, Run]) -> Run | None:
    """The evaluate run of exactly these training runs: ``run_id`` checked, else the latest match, else None."""
    # evaluate compares the experiment's pair; its runs name those two training runs
    wanted = {
        run_parameter(policy_arm(arm).train_entry_point): training_runs[arm].info.run_id for arm in EXPERIMENT_ARMS
    }
    if run_id:
        run = client.get_run(resolve_upstream_run("evaluate", run_id, {}, how_to_make="mlflow run . -e evaluate"))
        # An evaluate run started with "" run ids keeps the ids it resolved in abtest.resolved.* tags.
        used = effective_params(run)
        if any(used.get(name) != value for name, value in wanted.items()):
            evaluated = {name: used.get(name, "") for name in wanted}
            raise LineageError(
                f"evaluate run {run_id} evaluated {evaluated}, not the training runs being registered {wanted}; "
                "pass the evaluate run of these training runs, or evaluate_run='' to look it up"
            )
        log.info("evaluation tags from evaluate run %s", run_id)
        return run
    candidates = client.search_runs(
        [current_experiment_id()],
        filter_string=f"tags.{tags.STEP} = 'evaluate' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    for run in candidates:
        used = effective_params(run)
        if all(used.get(name) == value for name, value in wanted.items()):
            log.info("evaluation tags from evaluate run %s", run.info.run_id)
            return run
    log.info("no FINISHED evaluate run of these training runs; versions get no evaluation tags")
    return None
