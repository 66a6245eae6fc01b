"""`main`: the whole A/B pipeline as one tree of nested, cached runs.

Inputs: the parameters a user tunes (each declared in MLproject's main block with default "", meaning "the owning
step's default"; main passes on only those set), ``env_manager`` ("" = the one main runs in), ``force`` (reuse
nothing) and ``until`` (stop after that step). Before any step runs, each set parameter is checked against the
steps that take it: its type, and its value with each step's own pre-run rule (``check_params`` in the step's
module), so a bad value never fails half-way, after `register` has moved aliases.
Outputs: one child run per step of :data:`abtest.tracking.pipeline.PIPELINE` that exists in MLproject (each tagged
``mlflow.parentRunId`` = this run, or reused from an earlier identical launch); on this run, the step table
(``pipeline/steps.csv``, ``pipeline/steps.md``, tags ``abtest.steps.<entry>.run_id``/``.outcome``, metrics
``duration_s.<entry>``) and a summary of the children: their ``abtest.*`` tags and headline metrics.
Steps that do not depend on each other (train_a and train_b) run at the same time. Each child run is named after
its entry point and the parameters the user set (``train_b num_leaves=63``), this run after the pipeline
(``main ml-100k temporal``) unless ``mlflow run --run-name`` named it. Runs of this experiment that an earlier,
killed main (or step) left RUNNING are marked KILLED first (tag ``abtest.stale_runs``, the step table's reason
column) and their steps run again.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENV, MLFLOW_RUN_NAME

from abtest.config import PROJECT_DIR
from abtest.tracking import tags
from abtest.tracking.launcher import mlflow_launcher
from abtest.tracking.lineage import records_failure, step_run
from abtest.tracking.pipeline import (
    PipelineResult,
    Step,
    active_steps,
    is_generated_run_name,
    parse_bool,
    pipeline_run_name,
    resolve_env_manager,
    run_pipeline,
    step_parameters,
    steps_until,
)
from abtest.tracking.pipeline_summary import child_summary, log_step_table, record_step
from abtest.tracking.reuse import code_version
from abtest.tracking.stale import find_stale_runs, mark_killed
from steps.cli import (
    configure_logging,
    entry_point_parameters,
    entry_points,
    parameter_defaults,
    parameter_type,
    parse_params,
)

log = logging.getLogger(__name__)

# main's own parameters; every other main parameter is a step parameter passed on when set.
OWN_PARAMS: tuple[str, ...] = ("env_manager", "force", "until")


def user_parameters(namespace_values: Mapping[str, object]) -> dict[str, str]:
    """The step parameters the user set (non-empty), as strings."""
    return {
        name: str(value)
        for name, value in namespace_values.items()
        if name not in OWN_PARAMS and value not in ("", None)
    }


def check_user_parameters(user_params: Mapping[str, str], steps: Sequence[Step]) -> None:
    """Fail before any step runs when a set parameter reaches no step or has the wrong type for one."""
    for name, value in user_params.items():
        takers = [
            (step.entry_point, step_name)
            for step in steps
            for step_name in entry_point_parameters(step.entry_point)
            if step.main_name(step_name) == name
        ]
        if not takers:
            raise ValueError(
                f"parameter {name}={value!r} is taken by no step of this pipeline "
                f"({[s.entry_point for s in steps]}); remove it or add the step to MLproject"
            )
        for entry, step_name in takers:
            kind = entry_point_parameters(entry)[step_name].get("type", "string")
            try:
                parameter_type(kind)(value)
            except ValueError:
                raise ValueError(
                    f"parameter {name} must be {kind} (as {entry}'s {step_name} declares), got {value!r}"
                ) from None


def step_namespace(step: Step, user_params: Mapping[str, str]) -> argparse.Namespace:
    """The parameters ``step`` would parse from what main passes it (upstream run ids left at "")."""
    passed = step_parameters(
        step, entry_point_parameters(step.entry_point), user_params, dict.fromkeys(step.upstream, "")
    )
    return parse_params(step.entry_point, [f"--{name}={value}" for name, value in passed.items()])


def check_parameter_values(user_params: Mapping[str, str], steps: Sequence[Step]) -> None:
    """Fail before any step runs when a step would reject the value main passes it, with that step's message.

    Without this a bad value for a late step (``router_split=2``) fails only after `register` has moved the
    PolicyA / PolicyB aliases.
    """
    namespaces = {step.entry_point: step_namespace(step, user_params) for step in steps}
    for step in steps:
        # Each entry point's module owns its pre-run rule; main applies them, it does not restate them.
        check_params = importlib.import_module(f"steps.{step.entry_point}").check_params
        try:
            check_params(namespaces[step.entry_point], namespaces)
        except (ValueError, MlflowException) as exc:
            given = {
                main_name: user_params[main_name]
                for name in entry_point_parameters(step.entry_point)
                if (main_name := step.main_name(name)) in user_params
            }
            shown = f"the parameters main passes it {given}" if given else "this pipeline's parameters"
            raise ValueError(f"step {step.entry_point} would reject {shown}: {exc}; nothing was run") from None


def name_run(current: str, user_params: Mapping[str, str], *, until: str, force: bool) -> None:
    """Name main's run after the pipeline (``main ml-100k temporal``) unless the user named it (``--run-name``)."""
    if current and not is_generated_run_name(current):
        return
    mlflow.set_tag(
        MLFLOW_RUN_NAME, pipeline_run_name(user_params, parameter_defaults("prepare"), until=until, force=force)
    )


def kill_stale_runs(main_run_id: str, experiment_id: str, client: MlflowClient) -> dict[str, str]:
    """Mark KILLED the runs of this experiment left RUNNING by a process that is gone; say so.

    Returns a note per entry point for the step table (the step's new run replaces its stale one); the ids are
    also kept in tag :data:`~abtest.tracking.tags.STALE_RUNS` on main's run.
    """
    stale = find_stale_runs(experiment_id, exclude=frozenset({main_run_id}), client=client)
    notes: dict[str, list[str]] = {}
    for found in stale:
        mark_killed(found, by_run=main_run_id, client=client)
        log.warning("marked %s run %s KILLED: %s", found.entry_point or "a", found.run_id, found.reason)
        notes.setdefault(found.entry_point, []).append(found.run_id)
    if stale:
        mlflow.set_tag(tags.STALE_RUNS, tags.cut(",".join(found.run_id for found in stale)))
    return {
        entry: f"stale run {', '.join(ids)} marked KILLED (its process was gone)" for entry, ids in notes.items()
    }


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Run or reuse every step, record the step table and summary on this run, and return its id."""
    namespace = parse_params("main", argv, description=__doc__)
    configure_logging()
    pipeline = active_steps(entry_points())
    user_params = user_parameters(vars(namespace))
    # Checked against the whole pipeline: a parameter of a step after `until` is simply not needed this time.
    check_user_parameters(user_params, pipeline)
    steps = steps_until(pipeline, namespace.until)
    # Values only for the steps that run: router_split=1 (all users to B) is a valid router without simulate.
    check_parameter_values(user_params, steps)
    force = parse_bool("force", namespace.force)
    with step_run("main") as run:
        client = MlflowClient()
        run_tags = client.get_run(run.info.run_id).data.tags
        env_manager = resolve_env_manager(namespace.env_manager, run_tags.get(MLFLOW_PROJECT_ENV))
        version = code_version(PROJECT_DIR)
        mlflow.set_tags({tags.CODE_VERSION: version, tags.ENV_MANAGER: env_manager})
        name_run(run_tags.get(MLFLOW_RUN_NAME, ""), user_params, until=namespace.until, force=force)
        notes = kill_stale_runs(run.info.run_id, run.info.experiment_id, client)
        log.info(
            "pipeline %s; code %s; env manager %s; force %s",
            [s.entry_point for s in steps],
            version,
            env_manager,
            force,
        )
        result = PipelineResult()
        try:
            run_pipeline(
                steps,
                user_params=user_params,
                declared={s.entry_point: list(entry_point_parameters(s.entry_point)) for s in steps},
                defaults={s.entry_point: parameter_defaults(s.entry_point) for s in steps},
                code_version=version,
                experiment_id=run.info.experiment_id,
                launch=mlflow_launcher(
                    project_uri=str(PROJECT_DIR), env_manager=env_manager, experiment_id=run.info.experiment_id
                ),
                force=force,
                on_record=record_step,
                result=result,
                notes=notes,
            )
        finally:
            table = log_step_table(result.records)
        summary, metrics = child_summary(result.run_ids, client)
        mlflow.set_tags(summary)
        if metrics:
            mlflow.log_metrics(metrics)
    print(table.to_string(index=False))  # the human summary at the end of `mlflow run . -e main`
    for key, value in sorted(summary.items()):
        print(f"{key} = {value}")
    return run.info.run_id


if __name__ == "__main__":
    main()
