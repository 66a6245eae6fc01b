"""`demo`: what the live router does with real users, in one screen.

Inputs: ``router_model_name`` ("" = router's default) at alias ``router``; its version's tags name the prepare run
(whose test split supplies the users), the configured split and the bundled policy versions; ``n_users`` users are
sampled from that test split with ``seed``, and every test row of theirs is routed.
Outputs (printed and logged on this run): the per-arm table (users, rows, share of users, expected share, mean
score), the sample-ratio chi-square p-value (scipy, via abtest.experiment.stats.srm), example rows, the bundled
versions; metrics ``users_a``, ``users_b``, ``share_b``, ``srm_p_value``; artifacts ``demo/assignments.txt`` and
``demo/sample.csv``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.tracking import MlflowClient

from ab_router.arms import CONTROL, ROUTER_ALIAS, TREATMENT
from abtest.experiment.assignments import assignment_report, sample_pairs, summarise_assignments
from abtest.tracking import registry, tags
from abtest.tracking.lineage import load_prepared, records_failure, step_run
from abtest.tracking.params import log_resolved_params
from steps.cli import check_seed, configure_logging, inherit_defaults, parse_params

log = logging.getLogger(__name__)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The sampling seed, before the registry is asked for the router."""
    check_seed(params.seed)


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Route a sample of test users through the live router and print the assignment table; returns the run id."""
    params = inherit_defaults(parse_params("demo", argv, description=__doc__), "router", ["router_model_name"])
    configure_logging()
    check_params(params)
    client = MlflowClient()
    with step_run("demo") as run:
        version = registry.version_by_alias(client, params.router_model_name, ROUTER_ALIAS)
        version_tags = version.tags
        split = float(version_tags[tags.SPLIT])
        prepared = load_prepared(version_tags[tags.PREPARE_RUN])
        pairs = sample_pairs(prepared.test, n_users=params.n_users, seed=params.seed)
        router_uri = f"models:/{params.router_model_name}@{ROUTER_ALIAS}"
        routed = mlflow.pyfunc.load_model(router_uri).predict(pairs)
        summary = summarise_assignments(routed, split=split)

        report = assignment_report(
            routed, summary, router_uri=router_uri, version=str(version.version), version_tags=version_tags
        )
        # `mlflow run` has already logged the raw values; resolved "" defaults become abtest.resolved.* tags.
        log_resolved_params(vars(params))
        mlflow.log_metrics(
            {
                "users_a": float(summary.table.loc[CONTROL, "users"]),
                "users_b": float(summary.table.loc[TREATMENT, "users"]),
                "share_b": float(summary.table.loc[TREATMENT, "share_users"]),
                "srm_p_value": summary.srm_p_value,
            }
        )
        mlflow.set_tag(tags.ROUTER_VERSION, str(version.version))
        mlflow.log_text(report, "demo/assignments.txt")
        mlflow.log_text(routed.to_csv(index=False), "demo/sample.csv")
        print(report)
        return run.info.run_id


if __name__ == "__main__":
    main()
