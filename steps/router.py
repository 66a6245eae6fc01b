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

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

import ab_router
from ab_router.assignment import AssignmentConfig
from ab_router.model import (
    FEATURE_DEFAULTS_ARTIFACT,
    ITEM_FEATURES_ARTIFACT,
    POLICY_ARTIFACTS,
    USER_FEATURES_ARTIFACT,
    ABRouterModel,
    router_config,
    router_signature,
)
from ab_router.schema import ITEM_ID, USER_ID
from steps import registry
from steps.cli import configure_logging, inherit_defaults, parse_params
from steps.config import (
    FEATURE_DEFAULTS_FILE,
    FEATURE_TABLES_DIR,
    ITEM_FEATURES_FILE,
    PROJECT_DIR,
    USER_FEATURES_FILE,
)
from steps.lineage import records_failure, step_run
from steps.training import log_resolved_params

log = logging.getLogger(__name__)

ROUTER_ARTIFACT_NAME = "router"
# Router version tags (read by `demo`, `simulate` and `main`).
ASSIGNMENT_TAGS = ("split", "salt", "assignment")


@dataclass(frozen=True)
class RouterVersion:
    """What `router` registered: the router version and the policy versions it bundles."""

    name: str
    version: str
    model_uri: str
    policy_versions: dict[str, str]
    prepare_run: str


def _example_pairs(user_features: pd.DataFrame, item_features: pd.DataFrame) -> pd.DataFrame:
    """A few known pairs and one unseen user: the input example shown in the UI and checked at log time."""
    users = user_features[USER_ID].head(3).tolist()
    items = item_features[ITEM_ID].head(3).tolist()
    unseen_user = int(user_features[USER_ID].max()) + 1
    return pd.DataFrame({USER_ID: [*users, unseen_user], ITEM_ID: [*items, items[0]]}, dtype="int64")


def log_router(
    client: MlflowClient, *, model_name: str, router_model_name: str, assignment: AssignmentConfig
) -> RouterVersion:
    """Log the router on the active run from ``model_name@PolicyA/@PolicyB``, register it, set alias ``router``."""
    versions = {
        arm: registry.version_by_alias(client, model_name, alias) for arm, alias in registry.POLICY_ALIASES.items()
    }
    prepare_runs = {arm: v.tags.get(registry.PREPARE_RUN_TAG, "") for arm, v in versions.items()}
    if len(set(prepare_runs.values())) != 1 or not prepare_runs["A"]:
        raise ValueError(
            "PolicyA and PolicyB must be trained on the same prepare run (their "
            f"{registry.PREPARE_RUN_TAG} tags); got {prepare_runs}"
        )
    prepare_run = prepare_runs["A"]
    with tempfile.TemporaryDirectory() as tmp:
        tables = Path(
            mlflow.artifacts.download_artifacts(run_id=prepare_run, artifact_path=FEATURE_TABLES_DIR, dst_path=tmp)
        )
        # Pin versions, not aliases: the bundle must be exactly the versions recorded in the tags below.
        artifacts = {
            **{key: f"models:/{model_name}/{versions[arm].version}" for arm, key in POLICY_ARTIFACTS.items()},
            USER_FEATURES_ARTIFACT: str(tables / USER_FEATURES_FILE),
            ITEM_FEATURES_ARTIFACT: str(tables / ITEM_FEATURES_FILE),
            FEATURE_DEFAULTS_ARTIFACT: str(tables / FEATURE_DEFAULTS_FILE),
        }
        example = _example_pairs(
            pd.read_parquet(artifacts[USER_FEATURES_ARTIFACT]), pd.read_parquet(artifacts[ITEM_FEATURES_ARTIFACT])
        )
        model_info = mlflow.pyfunc.log_model(
            name=ROUTER_ARTIFACT_NAME,
            python_model=ABRouterModel(),
            artifacts=artifacts,
            model_config=router_config(
                assignment, versions={arm: (model_name, v.version) for arm, v in versions.items()}
            ),
            code_paths=[str(Path(ab_router.__file__).parent)],
            signature=router_signature(split=assignment.split),
            input_example=example,
            pip_requirements=str(PROJECT_DIR / "requirements.txt"),
        )
    run_id = mlflow.active_run().info.run_id
    policy_versions = {arm: str(v.version) for arm, v in versions.items()}
    tags = {
        registry.SOURCE_RUN_TAG: run_id,
        registry.PREPARE_RUN_TAG: prepare_run,
        "abtest.policy_model_name": model_name,
        **{f"abtest.policy_{arm.lower()}_version": version for arm, version in policy_versions.items()},
        **{f"abtest.{key}": str(getattr(assignment, key)) for key in ASSIGNMENT_TAGS},
    }
    registry.ensure_registered_model(
        client,
        router_model_name,
        description=(
            f"{router_model_name}: the served A/B router. Assigns each user_id to policy A or B by a salted "
            f"FNV-1a hash (alias {registry.ROUTER_ALIAS} = the live version) and returns that policy's score. "
            f"Each version bundles copies of {model_name}@PolicyA/@PolicyB as they were when `router` ran."
        ),
    )
    version, _ = registry.find_or_create_version(
        client,
        router_model_name,
        model_uri=model_info.model_uri,
        source_run=run_id,
        tags=tags,
        description=(
            f"router {assignment.assignment} split={assignment.split} bundling {model_name} "
            f"A=v{policy_versions['A']} B=v{policy_versions['B']}"
        ),
    )
    registry.point_alias(client, router_model_name, registry.ROUTER_ALIAS, version.version)
    return RouterVersion(
        name=router_model_name,
        version=str(version.version),
        model_uri=model_info.model_uri,
        policy_versions=policy_versions,
        prepare_run=prepare_run,
    )


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Log, register and alias the router; returns the router run's id."""
    params = inherit_defaults(parse_params("router", argv, description=__doc__), "register", ["model_name"])
    configure_logging()
    assignment = AssignmentConfig(split=params.split, salt=params.salt, assignment=params.assignment)
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
                "abtest.router_version": router.version,
                "abtest.policy_model_name": params.model_name,
                **{f"abtest.policy_{arm.lower()}_version": v for arm, v in router.policy_versions.items()},
            }
        )
        print(
            f"models:/{router.name}@{registry.ROUTER_ALIAS} -> version {router.version} "
            f"(A = {params.model_name} v{router.policy_versions['A']}, "
            f"B = {params.model_name} v{router.policy_versions['B']}, {assignment})"
        )
        return run.info.run_id


if __name__ == "__main__":
    main()
