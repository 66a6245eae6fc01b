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

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_model_name

from ab_router.arms import POLICY_ARMS, policy_arm
from abtest.tracking import registration_inputs, registry, tags
from abtest.tracking.lineage import records_failure, run_parameter, step_run
from abtest.tracking.params import log_resolved_params
from abtest.tracking.store import ensure_store_ready
from steps.cli import configure_logging, parse_params

log = logging.getLogger(__name__)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The registered model's name, by the registry's own rule (no "/" or ":", ...), before the store is asked."""
    _validate_model_name(params.model_name)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Register both policies and set their aliases; returns the register run's id."""
    params = parse_params("register", argv, description=__doc__)
    configure_logging()
    check_params(params)
    client = MlflowClient()
    # Every lineage check comes before the run opens, so a refused pair creates no version and moves no alias.
    ensure_store_ready()
    training_runs = {
        arm.name: registration_inputs.resolve_training_run(
            client, arm.name, getattr(params, run_parameter(arm.train_entry_point))
        )
        for arm in POLICY_ARMS
    }
    prepare_runs = {arm: registration_inputs.prepare_run_of(client, r) for arm, r in training_runs.items()}
    registry.shared_prepare_run(prepare_runs)
    evaluate_run = registration_inputs.evaluate_run_of(client, params.evaluate_run, training_runs)
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
                tags.MODEL_NAME: params.model_name,
                **{tags.policy_version(arm): r.version.version for arm, r in registered.items()},
                **{
                    tags.run_of(run_parameter(policy_arm(arm).train_entry_point)): r.info.run_id
                    for arm, r in training_runs.items()
                },
            }
        )
        mlflow.log_metric("versions_created", sum(r.created for r in registered.values()))
        for arm, r in registered.items():
            print(
                f"{params.model_name}@{policy_arm(arm).alias} -> version {r.version.version} "
                f"({'new' if r.created else 'existing'}; alias {'moved' if r.alias_moved else 'unchanged'})"
            )
        return run.info.run_id


if __name__ == "__main__":
    main()
