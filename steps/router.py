"""`router`: log the A/B router pyfunc, register it as ``router_model_name`` and point alias ``router`` at it.

Inputs: ``model_name`` (the policies' registered model; "" = register's default), its aliases PolicyA / PolicyB,
the prepare run both policy versions were trained on (their ``abtest.prepare_run`` tag), the assignment rule
``split`` / ``salt`` / ``assignment``, and the analysis plan fixed before any data (``primary_metric``,
``plan_alpha``, ``planned_days``, the guardrail margins ``margin_<guardrail>``).
Outputs: a router model logged on this run (name "router") that bundles copies of the two policy versions, the
prepare run's feature tables and the ``ab_router`` package; a new version of ``router_model_name`` tagged with the
bundled versions and the rule; alias ``router`` on it. Moving PolicyA/PolicyB later changes nothing served until
this step runs again. The plan is tag ``abtest.analysis_plan`` (JSON) on the version and on this run; `analyze`
reads it from the version it analyses. On this run: tags ``abtest.router_version``, ``abtest.policy_a_version``,
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
from abtest.experiment.plan import GUARDRAILS, METRICS, AnalysisPlan
from abtest.tracking import tags
from abtest.tracking.lineage import records_failure, step_run
from abtest.tracking.params import log_resolved_params
from abtest.tracking.router_bundle import log_router
from steps.cli import configure_logging, inherit_defaults, parse_params

log = logging.getLogger(__name__)

# router's plan parameters -> the AnalysisPlan field each sets (a guardrail's margin: margin_<guardrail>).
PLAN_PARAMETERS: dict[str, str] = {
    "primary_metric": "primary_metric",
    "plan_alpha": "alpha",
    "planned_days": "planned_days",
}


def margin_parameter(guardrail: str) -> str:
    """The router parameter holding ``guardrail``'s non-inferiority margin."""
    return f"margin_{guardrail}"


def analysis_plan(params: argparse.Namespace) -> AnalysisPlan:
    """The analysis plan of router's parameters; the metric not chosen as primary is the secondary one.

    Each parameter is checked on its own first, so a refusal names the parameter, the plan's rule and the value.
    """
    secondary = tuple(metric for metric in METRICS if metric != params.primary_metric)
    for parameter, field in PLAN_PARAMETERS.items():
        extra = {"secondary_metrics": secondary} if field == "primary_metric" else {}
        _check_plan_parameter(parameter, **{field: getattr(params, parameter)}, **extra)
    margins = {guardrail: getattr(params, margin_parameter(guardrail)) for guardrail in GUARDRAILS}
    for guardrail, margin in margins.items():
        _check_plan_parameter(margin_parameter(guardrail), guardrail_margins={guardrail: margin})
    return AnalysisPlan(
        primary_metric=params.primary_metric,
        secondary_metrics=secondary,
        alpha=params.plan_alpha,
        planned_days=params.planned_days,
        guardrail_margins=margins,
    )


def _check_plan_parameter(parameter: str, **fields: object) -> None:
    try:
        AnalysisPlan(**fields)
    except ValueError as exc:
        raise ValueError(f"parameter {parameter}: {exc}") from None


def assignment_config(params: argparse.Namespace) -> AssignmentConfig:
    """The assignment rule of router's parameters (the config checks split, salt and mode)."""
    return AssignmentConfig(split=params.split, salt=params.salt, assignment=params.assignment)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The router model's name (the registry's rule), the assignment rule and the analysis plan, before a run
    opens."""
    _validate_model_name(params.router_model_name)
    assignment_config(params)
    analysis_plan(params)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Log, register and alias the router; returns the router run's id."""
    params = inherit_defaults(parse_params("router", argv, description=__doc__), "register", ["model_name"])
    configure_logging()
    check_params(params)
    assignment = assignment_config(params)
    plan = analysis_plan(params)
    with step_run("router") as run:
        # `mlflow run` has already logged the raw values; resolved "" defaults become abtest.resolved.* tags.
        log_resolved_params(vars(params))
        router = log_router(
            MlflowClient(),
            model_name=params.model_name,
            router_model_name=params.router_model_name,
            assignment=assignment,
            plan=plan,
        )
        mlflow.set_tags(
            {
                tags.ROUTER_VERSION: router.version,
                tags.ANALYSIS_PLAN: plan.to_json(),
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
