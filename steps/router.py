"""`router`: log the A/B router pyfunc, register it as ``router_model_name`` and point alias ``router`` at it.

Inputs: ``model_name`` (the policies' registered model; "" = register's default), its aliases PolicyA / PolicyB,
the prepare run both policy versions were trained on (their ``abtest.prepare_run`` tag), and the assignment rule
``split`` / ``salt`` / ``assignment``.
Outputs: a router model logged on this run (name "router") that bundles copies of the two policy versions, the
prepare run's feature tables and the ``ab_router`` package; a new version of ``router_model_name`` tagged with the
bundled versions and the rule; alias ``router`` on it. Moving PolicyA/PolicyB later changes nothing served until
this step runs again. On this run: tags ``abtest.router_version``, ``abtest.policy_a_version``,
``abtest.policy_b_version``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_model_name

from ab_router.arms import ROUTER_ALIAS
from ab_router.assignment import AssignmentConfig
from abtest.tracking import tags
from abtest.tracking.lineage import records_failure, step_run
from abtest.tracking.params import log_resolved_params
from abtest.tracking.router_bundle import log_router
from steps.cli import configure_logging, inherit_defaults, parse_params

log = logging.getLogger(__name__)


def assignment_config(params: argparse.Namespace) -> AssignmentConfig:
    """The assignment rule of router's parameters (the config checks split, salt and mode)."""
    return AssignmentConfig(split=params.split, salt=params.salt, assignment=params.assignment)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The router model's name (the registry's rule) and the assignment rule, before a run opens."""
    _validate_model_name(params.router_model_name)
    assignment_config(params)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Log, register and alias the router; returns the router run's id."""
    params = inherit_defaults(parse_params("router", argv, description=__doc__), "register", ["model_name"])
    configure_logging()
    check_params(params)
    assignment = assignment_config(params)
    with step_run("router") as run:
        # `mlflow run` has already logged the raw values; resolved "" defaults become abtest.resolved.* tags.
        log_resolved_params(vars(params))
        router = log_router(
            MlflowClient(),
            model_name=params.model_name,
            router_model_name=params.router_model_name,
            assignment=assignment,
        )
        mlflow.set_tags(
            {
                tags.ROUTER_VERSION: router.version,
                tags.POLICY_MODEL_NAME: params.model_name,
                **{tags.policy_version(arm): v for arm, v in router.policy_versions.items()},
            }
        )
        print(
            f"models:/{router.name}@{ROUTER_ALIAS} -> version {router.version} "
            "("
            + ", ".join(f"{arm} = {params.model_name} v{v}" for arm, v in router.policy_versions.items())
            + f", {assignment})"
        )
        return run.info.run_id


if __name__ == "__main__":
    main()
