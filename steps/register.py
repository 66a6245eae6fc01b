"""`register`: both policies as versions of one registered model, with aliases PolicyA and PolicyB.

Inputs: ``train_a_run`` / ``train_b_run`` (run ids; "" = the latest FINISHED train_a / train_b run of the
experiment), ``evaluate_run`` (optional; "" = the latest FINISHED evaluate run of those two training runs, if any)
and ``model_name``. Refused before any version or alias changes: training runs of different prepare runs, and an
``evaluate_run`` that evaluated other training runs.
Outputs: versions of ``model_name`` made from each training run's logged model (its ``abtest.model_uri`` tag),
tagged with the source run, the policy, the prepare run and its data digest, the training metrics and (with an
evaluate run) its metrics; aliases ``PolicyA`` / ``PolicyB`` on them. Re-running with the same runs creates no
version and moves no alias. On this run: tags ``abtest.policy_a_version``, ``abtest.policy_b_version``,
``abtest.model_name`` and metric ``versions_created``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from steps import registry
from steps.cli import configure_logging, parse_params
from steps.config import STEP_TAG
from steps.lineage import LineageError, current_experiment_id, records_failure, resolve_upstream_run, step_run
from steps.tracking_store import ensure_store_ready
from steps.training import effective_params, log_resolved_params

log = logging.getLogger(__name__)


def _training_run(client: MlflowClient, arm: str, run_id: str) -> Run:
    step = registry.POLICY_STEPS[arm]
    resolved = resolve_upstream_run(step, run_id, {}, how_to_make=f"mlflow run . -e {step}")
    return client.get_run(resolved)


def _prepare_run(client: MlflowClient, training_run: Run) -> Run:
    # The training steps keep the resolved lineage in a tag (the param may hold `mlflow run`'s "" default).
    prepare_run = training_run.data.tags.get(registry.PREPARE_RUN_TAG) or training_run.data.params.get(
        "prepare_run"
    )
    if not prepare_run:
        raise ValueError(
            f"training run {training_run.info.run_id} has no {registry.PREPARE_RUN_TAG!r} tag or prepare_run "
            "param; retrain it with the current train_a / train_b steps"
        )
    return client.get_run(prepare_run)


def _evaluate_run(client: MlflowClient, run_id: str, training_runs: dict[str, Run]) -> Run | None:
    wanted = {"train_a_run": training_runs["A"].info.run_id, "train_b_run": training_runs["B"].info.run_id}
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
        filter_string=f"tags.{STEP_TAG} = 'evaluate' and attributes.status = 'FINISHED'",
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


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Register both policies and set their aliases; returns the register run's id."""
    params = parse_params("register", argv, description=__doc__)
    configure_logging()
    client = MlflowClient()
    # Every lineage check comes before the run opens, so a refused pair creates no version and moves no alias.
    ensure_store_ready()
    training_runs = {arm: _training_run(client, arm, getattr(params, f"train_{arm.lower()}_run")) for arm in "AB"}
    prepare_runs = {arm: _prepare_run(client, r) for arm, r in training_runs.items()}
    registry.shared_prepare_run(prepare_runs)
    evaluate_run = _evaluate_run(client, params.evaluate_run, training_runs)
    with step_run("register") as run:
        # `mlflow run` has already logged the raw values; resolved "" defaults become abtest.resolved.* tags.
        log_resolved_params(vars(params))
        registered = registry.register_policies(
            client,
            model_name=params.model_name,
            training_runs=training_runs,
            prepare_runs=prepare_runs,
            evaluate_run=evaluate_run,
        )
        mlflow.set_tags(
            {
                "abtest.model_name": params.model_name,
                **{f"abtest.policy_{arm.lower()}_version": r.version.version for arm, r in registered.items()},
                **{f"abtest.train_{arm.lower()}_run": r.info.run_id for arm, r in training_runs.items()},
            }
        )
        mlflow.log_metric("versions_created", sum(r.created for r in registered.values()))
        for arm, r in registered.items():
            print(
                f"{params.model_name}@{registry.POLICY_ALIASES[arm]} -> version {r.version.version} "
                f"({'new' if r.created else 'existing'}; alias {'moved' if r.alias_moved else 'unchanged'})"
            )
        return run.info.run_id


if __name__ == "__main__":
    main()
