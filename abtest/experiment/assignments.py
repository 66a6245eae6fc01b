"""Who the live router sends where: a sample of test users routed, and the per-arm table with its sample-ratio
check that `demo` prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from ab_router.schema import ITEM_ID, USER_ID
from abtest.experiment.stats.config import AnalysisConfig
from abtest.experiment.stats.srm import srm_test
from abtest.tracking import tags


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
    user_counts = users["policy"].value_counts().reindex(list(EXPERIMENT_ARMS), fill_value=0)
    table = pd.DataFrame(
        {
            "users": user_counts,
            "rows": routed["policy"].value_counts().reindex(list(EXPERIMENT_ARMS), fill_value=0),
            "share_users": user_counts / max(len(users), 1),
            "expected_share": [1.0 - split, split],
            "mean_score": routed.groupby("policy")["score"].mean().reindex(list(EXPERIMENT_ARMS)),
        }
    )
    table.index.name = "arm"
    if 0.0 < split < 1.0:
        srm = srm_test(user_counts.tolist(), AnalysisConfig(expected_split=(1.0 - split, split), alpha=0.05))
        return AssignmentSummary(table=table, srm_p_value=srm.p_value, srm_message=srm.message)
    everyone = TREATMENT if split == 1.0 else CONTROL
    ok = bool(user_counts[everyone] == len(users))
    return AssignmentSummary(
        table=table,
        srm_p_value=1.0 if ok else 0.0,
        srm_message=f"split {split}: every user must be in {everyone}: {'yes' if ok else 'NO'}",
    )


def assignment_report(
    routed: pd.DataFrame,
    summary: AssignmentSummary,
    *,
    router_uri: str,
    version: str,
    version_tags: Mapping[str, str],
) -> str:
    """The screen `demo` prints: the bundled versions and rule, the per-arm table, the SRM check, example rows."""
    bundled = (
        f"{router_uri} = version {version}: "
        + ", ".join(
            f"{arm} = {version_tags[tags.POLICY_MODEL_NAME]} v{version_tags[tags.policy_version(arm)]}"
            for arm in EXPERIMENT_ARMS
        )
        + f"; {version_tags[tags.ASSIGNMENT_RULE]} split={float(version_tags[tags.SPLIT])} "
        f"salt={version_tags[tags.SALT]!r}"
    )
    examples = routed.groupby("policy").head(3).sort_values(["policy", USER_ID])
    return "\n\n".join(
        [
            bundled,
            summary.table.to_string(float_format=lambda v: f"{v:.3f}"),
            f"sample-ratio check over {len(routed.drop_duplicates(USER_ID))} users: {summary.srm_message}",
            examples.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        ]
    )
