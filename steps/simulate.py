"""Step `simulate`: run the A/B experiment through the router and write its readout.

Inputs: the router (``router_run`` = the version a `router` run registered, else ``router_uri``, default
``models:/movielens_ctr_router@router``), loaded in process, or a served one at ``endpoint_url``; the `prepare`
run whose test period supplies users and logged items (``prepare_run``, "" = the one recorded on the router
version); the design (``days``, ``users_per_day``, ``k``, ``n_unseen``, ``seed``, ``environment`` replay |
synthetic, ``alpha``). The configured split comes from the router version (tag ``abtest.split``).
Outputs (this run): ``records/`` - the experiment's records in the layout of ``ab_router/records.py``, as a
real deployment leaves them: ``decisions/`` (written by the router's own decision log in process, or from a
served router's answers), ``impressions/`` and ``outcomes/`` (the slates shown and the clicks drawn, written with
``abtest.experiment.events``), all on a simulated calendar whose day 1 is the test period's first date (`analyze`
reads them with ``-P simulate_run=<this run>``); the readout `analyze` computes from those records, by the same
code (the router version's analysis plan; its health checks, metrics, guardrails and decision):
``readout/readout.html``, ``readout/readout.json``, ``readout/{results,daily,guardrails,health,arms}.csv``,
``readout/impressions.parquet``; analyze's headline metrics and per-day histories (``daily_<column>``, step = day)
plus the simulation's own (``true_ctr_<arm>`` in synthetic, ``records_<table>``, ``srm_flagged``,
``cuped_variance_reduction``); analyze's tags (``abtest.decision``, ``abtest.winner``, ``abtest.healthy``, ...).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow

from abtest.experiment.readout.evidence import log_daily_histories, readout_tags
from abtest.experiment.readout.experiment import RecordsReadout
from abtest.experiment.readout.page import write_readout
from abtest.experiment.router_client import check_endpoint, connect_router
from abtest.experiment.runner import (
    ExperimentOutcome,
    ExperimentSpec,
    RecordsTarget,
    check_design,
    design_fields,
    run_experiment,
)
from abtest.tracking import tags
from abtest.tracking.lineage import load_prepared, records_failure, step_run
from abtest.tracking.params import log_resolved_params
from steps.cli import check_seed, configure_logging, inherit_defaults, parse_params

log = logging.getLogger(__name__)

READOUT_DIR = "readout"
RECORDS_DIR = "records"  # the artifact folder `analyze` reads a simulate run's records from
ROUTER_LOG_DIR = "router-log"  # the router's decision log in wall-clock time, before it moves onto the calendar


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


def simulation_metrics(readout: RecordsReadout, outcome: ExperimentOutcome) -> dict[str, float]:
    """What only a simulation knows or counts, beside analyze's headline: the true CTRs, the records written,
    whether the SRM check failed and how much CUPED reduced the primary metric's variance."""
    srm = next(check for check in readout.health if check.name == "srm")
    return {
        **{f"true_ctr_{arm}": value for arm, value in outcome.truth.items()},
        **{f"records_{table}": float(count) for table, count in vars(outcome.records).items()},
        "srm_flagged": float(not srm.passed),
        "cuped_variance_reduction": readout.primary.cuped.variance_reduction,
    }


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Simulate the experiment and log its readout; returns the run id."""
    params = inherit_defaults(parse_params("simulate", argv, description=__doc__), "prepare", ["seed"])
    configure_logging()
    check_params(params)
    with step_run("simulate") as run, tempfile.TemporaryDirectory() as tmp:
        router_log = Path(tmp) / ROUTER_LOG_DIR
        router = connect_router(
            router_uri=params.router_uri,
            router_run=params.router_run,
            endpoint_url=params.endpoint_url,
            prepare_run=params.prepare_run,
            decision_log=router_log,
        )
        name, _, version = router.handle.model_uri.removeprefix("models:/").rpartition("/")
        target = RecordsTarget(
            directory=Path(tmp) / RECORDS_DIR,
            router_log=router_log,
            router_name=name,
            router_version=version,
            salt=router.handle.tags.get(tags.SALT, ""),
            plan=router.handle.tags.get(tags.ANALYSIS_PLAN),
        )
        spec = experiment_spec(params, split=router.split)
        log_resolved_params(
            {**vars(params), "prepare_run": router.prepare_run, "seed": spec.seed, "split": spec.split}
        )
        mlflow.set_tags({tags.PREPARE_RUN: router.prepare_run, tags.ROUTER_URI: router.handle.model_uri})
        outcome = run_experiment(
            load_prepared(router.prepare_run),
            router.scorer,
            spec,
            truth_scorer=router.truth_scorer,
            records=target,
        )
        mlflow.log_artifacts(str(target.directory), RECORDS_DIR)
        readout = outcome.readout
        directory = Path(tmp) / READOUT_DIR
        write_readout(readout, directory)
        readout.arms.to_csv(directory / "arms.csv", index=False)
        outcome.impressions.to_parquet(directory / "impressions.parquet")
        mlflow.log_artifacts(str(directory), READOUT_DIR)
        mlflow.log_metrics({**readout.headline(), **simulation_metrics(readout, outcome)})
        log_daily_histories(readout)
        mlflow.set_tags(readout_tags(readout))
    print(f"simulate ({spec.environment}, {spec.days} days): {readout.decision}")
    return run.info.run_id


if __name__ == "__main__":
    main()
