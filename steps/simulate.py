"""Step `simulate`: run the A/B experiment through the router and write its readout.

Inputs: the router (``router_run`` = the version a `router` run registered, else ``router_uri``, default
``models:/movielens_ctr_router@router``), loaded in process, or a served one at ``endpoint_url``; the `prepare`
run whose test period supplies users and logged items (``prepare_run``, "" = the one recorded on the router
version); the design (``days``, ``users_per_day``, ``k``, ``n_unseen``, ``seed``, ``environment`` replay |
synthetic, ``alpha``). The configured split comes from the router version (tag ``abtest.split``).
Outputs (this run): ``readout/readout.html`` (lift with CI band over days, CTR per arm, sequential p-values, SRM
panel, guardrails, decision), ``readout/readout.json``, ``readout/{daily,arms,guardrails}.csv``,
``readout/impressions.parquet``; headline metrics (``cuped_lift_abs``, ``srm_p_value``, ``stop_day``, ...) and the
decision as tag ``abtest.decision``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow

from abtest.experiment.readout.report import write_readout
from abtest.experiment.router_client import check_endpoint, endpoint_scorer
from abtest.experiment.runner import (
    ExperimentSpec,
    check_design,
    design_fields,
    load_router,
    pyfunc_scorer,
    resolve_router,
    run_experiment,
)
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError, load_prepared, records_failure, resolve_upstream_run, step_run
from abtest.tracking.params import log_resolved_params
from steps.cli import check_seed, configure_logging, inherit_defaults, parse_params

log = logging.getLogger(__name__)

READOUT_DIR = "readout"


def experiment_spec(params: argparse.Namespace, *, split: float) -> ExperimentSpec:
    """The experiment design of simulate's parameters for a router that sends ``split`` of the users to B."""
    return ExperimentSpec(
        environment=params.environment,
        days=params.days,
        users_per_day=params.users_per_day,
        k=params.k,
        n_unseen=params.n_unseen,
        seed=params.seed,
        alpha=params.alpha,
        split=split,
    )


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """Everything that can be checked without the router: the design, the seed and that the endpoint answers.

    Called before the run is opened and before the router (seconds to load) is touched. Run by main,
    ``pipeline`` holds the parameters of the other steps: the router this pipeline registers is the one
    simulated, so its split must leave both arms users (0 < split < 1).
    """
    check_design(**design_fields(params))
    check_seed(inherit_defaults(params, "prepare", ["seed"]).seed)
    if params.endpoint_url:
        check_endpoint(params.endpoint_url, model_uri=params.router_uri)
    if pipeline and "router" in pipeline:
        experiment_spec(params, split=pipeline["router"].split)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Simulate the experiment and log its readout; returns the run id."""
    params = inherit_defaults(parse_params("simulate", argv, description=__doc__), "prepare", ["seed"])
    configure_logging()
    check_params(params)
    with step_run("simulate") as run:
        router = resolve_router(params.router_uri, router_run=params.router_run)
        prepare_run = params.prepare_run or router.prepare_run
        if not prepare_run:
            raise LineageError(
                f"router {router.model_uri} records no prepare run (tag {tags.PREPARE_RUN}); pass --prepare_run"
            )
        prepare_run = resolve_upstream_run("prepare", prepare_run, {}, how_to_make="mlflow run . -e prepare")
        if params.endpoint_url:
            scorer, split = endpoint_scorer(params.endpoint_url, model_uri=router.model_uri), router.split
        else:
            model, split = load_router(router)
            scorer = pyfunc_scorer(model)
            split = router.split if router.split is not None else split
        if split is None:
            raise LineageError(f"router {router.model_uri} records no split (tag {tags.SPLIT} or model config)")
        spec = experiment_spec(params, split=split)
        log_resolved_params({**vars(params), "prepare_run": prepare_run, "seed": spec.seed, "split": split})
        mlflow.set_tags({tags.PREPARE_RUN: prepare_run, tags.ROUTER_URI: router.model_uri})
        outcome = run_experiment(load_prepared(prepare_run), scorer, spec)
        readout = outcome.readout
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / READOUT_DIR
            write_readout(readout, directory)
            outcome.impressions.to_parquet(directory / "impressions.parquet")
            mlflow.log_artifacts(str(directory), READOUT_DIR)
        mlflow.log_metrics(readout.headline())
        mlflow.set_tag(tags.DECISION, tags.cut(readout.decision))
    print(f"simulate ({spec.environment}, {spec.days} days): {readout.decision}")
    return run.info.run_id


if __name__ == "__main__":
    main()
