"""`demo`: what the live router does with real users, in one screen.

Inputs: ``router_model_name`` ("" = router's default) at alias ``router``; its version's tags name the prepare run
(whose test split supplies the users), the configured split and the bundled policy versions; ``n_users`` users are
sampled from that test split with ``seed``, and every test row of theirs is routed.
Outputs (printed and logged on this run): the per-arm table (users, rows, share of users, expected share, mean
score), the sample-ratio chi-square p-value (scipy, via steps.abstats.srm), example rows, the bundled versions;
metrics ``users_a``, ``users_b``, ``share_b``, ``srm_p_value``; artifacts ``demo/assignments.txt`` and
``demo/sample.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from ab_router.assignment import ARMS
from ab_router.schema import ITEM_ID, USER_ID
from steps import registry
from steps.abstats.config import AnalysisConfig
from steps.abstats.srm import srm_test
from steps.cli import check_seed, configure_logging, inherit_defaults, parse_params
from steps.lineage import load_prepared, records_failure, step_run
from steps.training import log_resolved_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssignmentSummary:
    """Per-arm users and rows of a routed sample, and the sample-ratio check against the configured split."""

    table: pd.DataFrame  # index arm: users, rows, share_users, expected_share, mean_score
    srm_p_value: float
    srm_message: str


def sample_pairs(test: pd.DataFrame, *, n_users: int, seed: int) -> pd.DataFrame:
    """All test rows (user_id, item_id) of ``n_users`` users drawn without replacement (all users if fewer)."""
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    users = np.sort(test[USER_ID].unique())
    chosen = np.random.default_rng(seed).choice(users, size=min(n_users, len(users)), replace=False)
    rows = test[test[USER_ID].isin(chosen)]
    return rows[[USER_ID, ITEM_ID]].astype("int64").reset_index(drop=True)


def summarise_assignments(routed: pd.DataFrame, *, split: float) -> AssignmentSummary:
    """Per-arm table of a router output and the chi-square sample-ratio p-value over users (not rows)."""
    users = routed.drop_duplicates(USER_ID)
    user_counts = users["policy"].value_counts().reindex(list(ARMS), fill_value=0)
    table = pd.DataFrame(
        {
            "users": user_counts,
            "rows": routed["policy"].value_counts().reindex(list(ARMS), fill_value=0),
            "share_users": user_counts / max(len(users), 1),
            "expected_share": [1.0 - split, split],
            "mean_score": routed.groupby("policy")["score"].mean().reindex(list(ARMS)),
        }
    )
    table.index.name = "arm"
    if 0.0 < split < 1.0:
        srm = srm_test(user_counts.tolist(), AnalysisConfig(expected_split=(1.0 - split, split)))
        return AssignmentSummary(table=table, srm_p_value=srm.p_value, srm_message=srm.message)
    everyone = ARMS[1] if split == 1.0 else ARMS[0]
    ok = bool(user_counts[everyone] == len(users))
    return AssignmentSummary(
        table=table,
        srm_p_value=1.0 if ok else 0.0,
        srm_message=f"split {split}: every user must be in {everyone}: {'yes' if ok else 'NO'}",
    )


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Route a sample of test users through the live router and print the assignment table; returns the run id."""
    params = inherit_defaults(parse_params("demo", argv, description=__doc__), "router", ["router_model_name"])
    configure_logging()
    check_seed(params.seed)
    client = MlflowClient()
    with step_run("demo") as run:
        version = registry.version_by_alias(client, params.router_model_name, registry.ROUTER_ALIAS)
        tags = version.tags
        split = float(tags["abtest.split"])
        prepared = load_prepared(tags[registry.PREPARE_RUN_TAG])
        pairs = sample_pairs(prepared.test, n_users=params.n_users, seed=params.seed)
        router_uri = f"models:/{params.router_model_name}@{registry.ROUTER_ALIAS}"
        routed = mlflow.pyfunc.load_model(router_uri).predict(pairs)
        summary = summarise_assignments(routed, split=split)

        bundled = (
            f"{router_uri} = version {version.version}: A = {tags['abtest.policy_model_name']} "
            f"v{tags['abtest.policy_a_version']}, B = {tags['abtest.policy_model_name']} "
            f"v{tags['abtest.policy_b_version']}; {tags['abtest.assignment']} split={split} "
            f"salt={tags['abtest.salt']!r}"
        )
        examples = routed.groupby("policy").head(3).sort_values(["policy", USER_ID])
        report = "\n\n".join(
            [
                bundled,
                summary.table.to_string(float_format=lambda v: f"{v:.3f}"),
                f"sample-ratio check over {len(routed.drop_duplicates(USER_ID))} users: {summary.srm_message}",
                examples.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            ]
        )
        # `mlflow run` has already logged the raw values; resolved "" defaults become abtest.resolved.* tags.
        log_resolved_params(vars(params))
        mlflow.log_metrics(
            {
                "users_a": float(summary.table.loc["A", "users"]),
                "users_b": float(summary.table.loc["B", "users"]),
                "share_b": float(summary.table.loc["B", "share_users"]),
                "srm_p_value": summary.srm_p_value,
            }
        )
        mlflow.set_tag("abtest.router_version", str(version.version))
        mlflow.log_text(report, "demo/assignments.txt")
        mlflow.log_text(routed.to_csv(index=False), "demo/sample.csv")
        print(report)
        return run.info.run_id


if __name__ == "__main__":
    main()
