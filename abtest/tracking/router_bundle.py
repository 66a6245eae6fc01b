"""The router as an MLflow model: bundle the versions PolicyA / PolicyB point to, the prepare run's feature
tables and the ``ab_router`` package, log it, register it and point alias ``router`` at it.

Versions are pinned, not aliases: a router version serves exactly the policy versions its tags name, and moving
PolicyA / PolicyB later changes nothing served until a new router is logged. `promote`'s ramp logs a new router
the same way with the versions of the router it ramps (``policy_versions``), not the aliases. The analysis plan
the version is analysed by is its tag ``ANALYSIS_PLAN``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

import ab_router
from ab_router.arms import CONTROL, EXPERIMENT_ARMS, ROUTER_ALIAS, policy_arm
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
from abtest.config import (
    FEATURE_DEFAULTS_FILE,
    FEATURE_TABLES_DIR,
    ITEM_FEATURES_FILE,
    USER_FEATURES_FILE,
    project_file,
)
from abtest.experiment.plan import AnalysisPlan
from abtest.tracking import registry, tags

ROUTER_ARTIFACT_NAME = "router"


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
    client: MlflowClient,
    *,
    model_name: str,
    router_model_name: str,
    assignment: AssignmentConfig,
    plan: AnalysisPlan | None,
    policy_versions: Mapping[str, str] | None = None,
    version_tags: Mapping[str, str] | None = None,
) -> RouterVersion:
    """Log the router on the active run, register it as a new version and set alias ``router`` on it.

    It bundles ``model_name@PolicyA/@PolicyB``, or exactly ``policy_versions`` (arm -> version) when given. The
    version is tagged with its lineage, the assignment rule, ``plan`` (None: a router older than plans, re-logged
    without one) and ``version_tags``.
    """
    if policy_versions is None:
        versions = {
            arm.name: registry.version_by_alias(client, model_name, arm.alias)
            for arm in map(policy_arm, EXPERIMENT_ARMS)
        }
    else:
        versions = {arm: client.get_model_version(model_name, policy_versions[arm]) for arm in EXPERIMENT_ARMS}
    prepare_runs = {arm: v.tags.get(tags.PREPARE_RUN, "") for arm, v in versions.items()}
    if len(set(prepare_runs.values())) != 1 or not prepare_runs[CONTROL]:
        raise ValueError(
            "PolicyA and PolicyB must be trained on the same prepare run (their "
            f"{tags.PREPARE_RUN} tags); got {prepare_runs}"
        )
    prepare_run = prepare_runs[CONTROL]
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
                assignment,
                versions={arm: (model_name, v.version) for arm, v in versions.items()},
                # The decision log's fallback identity when the router is loaded by path, not models:/ URI.
                router_name=router_model_name,
            ),
            code_paths=[str(Path(ab_router.__file__).parent)],
            signature=router_signature(split=assignment.split),
            input_example=example,
            pip_requirements=str(project_file("requirements.txt")),
        )
    run_id = mlflow.active_run().info.run_id
    policy_versions = {arm: str(v.version) for arm, v in versions.items()}
    all_tags = {
        tags.SOURCE_RUN: run_id,
        tags.PREPARE_RUN: prepare_run,
        tags.POLICY_MODEL_NAME: model_name,
        **{tags.policy_version(arm): version for arm, version in policy_versions.items()},
        **{tag: str(getattr(assignment, field)) for field, tag in tags.ASSIGNMENT.items()},
        **({tags.ANALYSIS_PLAN: plan.to_json()} if plan is not None else {}),
        **dict(version_tags or {}),
    }
    registry.ensure_registered_model(
        client,
        router_model_name,
        description=(
            f"{router_model_name}: the served A/B router. Assigns each user_id to policy A or B by a salted "
            f"FNV-1a hash (alias {ROUTER_ALIAS} = the live version) and returns that policy's score. "
            f"Each version bundles copies of {model_name}@PolicyA/@PolicyB as they were when `router` ran."
        ),
    )
    version, _ = registry.find_or_create_version(
        client,
        router_model_name,
        model_uri=model_info.model_uri,
        source_run=run_id,
        tags=all_tags,
        description=(
            f"router {assignment.assignment} split={assignment.split} bundling {model_name} "
            + " ".join(f"{arm}=v{version}" for arm, version in policy_versions.items())
        ),
    )
    registry.point_alias(client, router_model_name, ROUTER_ALIAS, version.version)
    return RouterVersion(
        name=router_model_name,
        version=str(version.version),
        model_uri=model_info.model_uri,
        policy_versions=policy_versions,
        prepare_run=prepare_run,
    )
