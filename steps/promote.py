"""`promote`: act on an `analyze` readout in the Model Registry (not part of `main`: a person decides to run it).

Inputs: ``analyze_run`` ("" = the latest FINISHED analyze run), whose tags name the winner (``abtest.winner``),
whether the health checks passed and the guardrails held, and the router version analysed
(``abtest.router_version`` of ``router_model_name``; "" = the router the analyze run names in its tag
``abtest.router_uri``, else router's default); ``ramp_split`` ("" = crown the winner); ``force``.
Outputs: without ``ramp_split``, alias ``champion`` of the policies' registered model on the winner's version
(the version the analysed router bundled for that arm), which is tagged with the analyze run, its decision and
whether it was forced. With ``ramp_split``, a new router version like the analysed one (same salt, policy
versions and plan) sending that larger share of users to B, logged on this run, with alias ``router`` on it;
users already in B stay in B. A readout that names no winner, failed a health check or broke a guardrail is
refused with its reasons (this run FAILED, tag ``abtest.error``) unless ``force=true``. Nothing is half-moved.
On this run: tags ``abtest.analyze_run``, ``abtest.winner``, ``abtest.promotion``, ``abtest.promotion_forced``
(and ``abtest.router_version`` after a ramp).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_model_name

from ab_router.assignment import check_split
from abtest.tracking.lineage import records_failure, resolve_upstream_run, step_run
from abtest.tracking.params import log_resolved_params
from abtest.tracking.promotion import promote, promote_run_tags, promotion_summary, router_model_name_for
from steps.cli import configure_logging, parameter_defaults, parse_params

log = logging.getLogger(__name__)

FLAGS = {"true": True, "false": False}


def ramp_split(params: argparse.Namespace) -> float | None:
    """The new share of users for B ("" = no ramp: move champion instead)."""
    if params.ramp_split == "":
        return None
    try:
        split = check_split(float(params.ramp_split))
    except ValueError:
        raise ValueError(
            f'parameter ramp_split must be "" (promote the winner) or a share of users for B in (0, 1], '
            f"got {params.ramp_split!r}"
        ) from None
    if split == 0.0:
        raise ValueError("parameter ramp_split must be larger than 0 (a ramp sends more users to B), got 0")
    return split


def force(params: argparse.Namespace) -> bool:
    """Whether to act on a readout that would be refused."""
    try:
        return FLAGS[params.force]
    except KeyError:
        raise ValueError(f"parameter force must be one of {list(FLAGS)}, got {params.force!r}") from None


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The router model's name (the registry's rule), ramp_split and force, before a run opens."""
    if params.router_model_name:  # "" = router's default, a valid name
        _validate_model_name(params.router_model_name)
    ramp_split(params)
    force(params)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Promote the winner or ramp the router on an analyze run's readout; returns the promote run's id."""
    params = parse_params("promote", argv, description=__doc__)
    configure_logging()
    check_params(params)
    with step_run("promote") as run:
        analyze_run = resolve_upstream_run(
            "analyze", params.analyze_run, {}, how_to_make="mlflow run . -e analyze"
        )
        client = MlflowClient()
        readout_run = client.get_run(analyze_run)
        router_model_name = router_model_name_for(
            readout_run, params.router_model_name, parameter_defaults("router")["router_model_name"]
        )
        log_resolved_params({**vars(params), "analyze_run": analyze_run, "router_model_name": router_model_name})
        promotion, moved = promote(
            client,
            readout_run,
            router_model_name=router_model_name,
            ramp_split=ramp_split(params),
            force=force(params),
        )
        mlflow.set_tags(promote_run_tags(promotion, moved))
    print(f"promote: {promotion_summary(promotion, moved)}")
    return run.info.run_id


if __name__ == "__main__":
    main()
