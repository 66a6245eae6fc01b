"""Model Registry helpers shared by `register` and `router`: find-or-create versions, move aliases, read lineage.

Aliases only (``PolicyA``, ``PolicyB``, ``router``); stages are deprecated and never used. Every function takes the
client explicitly so tests can point it at their own store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ab_router.arms import POLICY_ARMS, policy_arm
from abtest.tracking import tags

log = logging.getLogger(__name__)

# The evaluate run's decision, copied onto both versions so the registry alone tells which policy won offline.
EVALUATION_TAGS = (tags.DECISION, tags.WINNER)
# Per-iteration histories (train_b's ``curve_val_auc`` at step = iteration,
# abtest/policies/training.py::log_curve): their latest value is the last iteration trained, not the model's, so
# they never become version tags.
HISTORY_METRIC_PREFIX = "curve_"


@dataclass(frozen=True)
class Registered:
    """One policy's version after `register`, and whether this run created it or moved its alias."""

    arm: str
    version: ModelVersion
    created: bool
    alias_moved: bool


def model_uri_of_run(run: Run) -> str:
    """The logged model's URI a training run recorded in its ``abtest.model_uri`` tag."""
    uri = run.data.tags.get(tags.MODEL_URI)
    if not uri:
        raise ValueError(
            f"run {run.info.run_id} has no {tags.MODEL_URI!r} tag; only train_a / train_b runs that logged a "
            "model can be registered"
        )
    return uri


def data_digest(run: Run) -> str:
    """Digest of the datasets a prepare run logged with mlflow.log_input ("train:ab12,val:...", sorted)."""
    digests = []
    for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
        context = next((t.value for t in dataset_input.tags if t.key == "mlflow.data.context"), "")
        digests.append(f"{context or dataset_input.dataset.name}:{dataset_input.dataset.digest}")
    return ",".join(sorted(digests)) or "unknown"


def _tokens(name: str) -> set[str]:
    return set(re.split(r"[._/\-]", name.lower()))


def metric_tags(metrics: Mapping[str, float], *, prefix: str, arm: str | None = None) -> dict[str, str]:
    """Metrics as version tags ``<prefix><name>``; with ``arm``, only the metrics whose name mentions that arm.

    Per-iteration histories (``curve_*``) are left out: a run's metrics hold their last step, not a summary.
    """
    chosen = {
        name: value
        for name, value in metrics.items()
        if not name.startswith(HISTORY_METRIC_PREFIX)
        and (arm is None or arm.lower() in _tokens(name) or f"policy{arm.lower()}" in _tokens(name))
    }
    return {f"{prefix}{name}": f"{value:.6g}" for name, value in sorted(chosen.items())}


def find_version(client: MlflowClient, name: str, *, source_run: str, model_uri: str) -> ModelVersion | None:
    """An existing version of ``name`` made from this run's model (by our tag, the model id or the source URI)."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    model_id = logged_model_id(model_uri)
    for version in sorted(versions, key=lambda v: int(v.version)):
        if (
            version.tags.get(tags.SOURCE_RUN) == source_run
            or (model_id is not None and getattr(version, "model_id", None) == model_id)
            or version.source == model_uri
        ):
            return version
    return None


def ensure_registered_model(client: MlflowClient, name: str, *, description: str) -> None:
    """Create the registered model if absent; keep its description current."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
        log.info("created registered model %s", name)
        return
    client.update_registered_model(name, description=description)


def logged_model_id(model_uri: str) -> str | None:
    """The id in a logged model's URI (``models:/m-<hex>``); None for any other URI."""
    found = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
    return found.group(1) if found else None


def find_or_create_version(
    client: MlflowClient, name: str, *, model_uri: str, source_run: str, tags: Mapping[str, str], description: str
) -> tuple[ModelVersion, bool]:
    """The version of ``name`` holding this model: an existing one (tags refreshed) or a new one."""
    existing = find_version(client, name, source_run=source_run, model_uri=model_uri)
    created = existing is None
    if created:
        version = client.create_model_version(
            name,
            source=model_uri,
            run_id=source_run,
            tags=dict(tags),
            description=description,
            # A tracking server accepts a logged-model source (models:/m-...) only with its model_id.
            model_id=logged_model_id(model_uri),
        )
    else:
        version = existing
        for key, value in tags.items():
            if version.tags.get(key) != value:
                client.set_model_version_tag(name, version.version, key, value)
    log.info("%s version %s for run %s", "created" if created else "reusing", version.version, source_run)
    return client.get_model_version(name, version.version), created


def point_alias(client: MlflowClient, name: str, alias: str, version: str) -> bool:
    """Point ``name@alias`` at ``version``; returns whether it moved (False when it already pointed there)."""
    try:
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        current = None
    if current == str(version):
        return False
    client.set_registered_model_alias(name, alias, str(version))
    log.info("alias %s@%s: %s -> %s", name, alias, current, version)
    return True


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    """The version ``name@alias`` points to, or an error that says which step sets the alias."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"registered model {name!r} has no alias {alias!r}; run `mlflow run . -e register` first"
        ) from exc


def policy_description(model_name: str) -> str:
    """Description of the registered model holding both policies."""
    return (
        f"{model_name}: the two policies of the MovieLens CTR A/B test, side by side as versions. "
        "Alias "
        + ", ".join(f"{arm.alias} = policy {arm.name} ({arm.kind})" for arm in POLICY_ARMS)
        + "; both return P(user likes the movie) from the same feature frame. Set by the "
        "`register` step; the served router (`router` step) bundles the versions the aliases point to."
    )


def shared_prepare_run(prepare_runs: Mapping[str, Run]) -> Run:
    """The one prepare run both arms were trained on; an error naming both when they differ.

    The router serves one set of feature tables and evaluate compares on one test split, so a pair trained on
    different prepare runs must not be registered side by side.
    """
    ids = {arm: run.info.run_id for arm, run in sorted(prepare_runs.items())}
    if len(set(ids.values())) != 1:
        shown = " and ".join(f"{arm} on prepare run {run_id}" for arm, run_id in ids.items())
        raise ValueError(
            f"policies A and B must be trained on the same prepare run, got {shown}; retrain one with "
            "-P prepare_run=<the other's prepare run>, or pass training runs of one prepare run"
        )
    return next(iter(prepare_runs.values()))


def register_policies(
    client: MlflowClient,
    *,
    model_name: str,
    training_runs: Mapping[str, Run],
    prepare_runs: Mapping[str, Run],
    evaluate_run: Run | None = None,
) -> dict[str, Registered]:
    """Register each arm's training-run model as a version of ``model_name`` and point its alias at it.

    Idempotent: a model already registered (same source run or logged model) is reused, never duplicated, and an
    alias already pointing at it is left alone.
    """
    unknown = sorted(set(training_runs) - {arm.name for arm in POLICY_ARMS})
    if unknown:
        raise ValueError(f"training_runs keys must be arms {[arm.name for arm in POLICY_ARMS]}, got {unknown}")
    shared_prepare_run(prepare_runs)  # before any version is created or alias moved
    ensure_registered_model(client, model_name, description=policy_description(model_name))
    registered = {}
    for arm, run in sorted(training_runs.items()):
        run_id = run.info.run_id
        prepare = prepare_runs[arm]
        table = policy_arm(arm)
        version_tags = {
            tags.SOURCE_RUN: run_id,
            tags.POLICY: arm,
            tags.PREPARE_RUN: prepare.info.run_id,
            tags.DATA_DIGEST: data_digest(prepare),
            **metric_tags(run.data.metrics, prefix="metric."),
        }
        if evaluate_run is not None:
            version_tags[tags.EVALUATE_RUN] = evaluate_run.info.run_id
            version_tags.update(metric_tags(evaluate_run.data.metrics, prefix="eval.", arm=arm))
            version_tags.update(
                {
                    f"eval.{tags.unprefixed(key)}": tags.cut(value, tags.SHORT_VALUE_CHARS)
                    for key, value in evaluate_run.data.tags.items()
                    if key in EVALUATION_TAGS
                }
            )
        version, created = find_or_create_version(
            client,
            model_name,
            model_uri=model_uri_of_run(run),
            source_run=run_id,
            tags=version_tags,
            description=f"policy {arm} ({table.kind}) from {table.train_entry_point} run {run_id}",
        )
        moved = point_alias(client, model_name, table.alias, version.version)
        registered[arm] = Registered(arm=arm, version=version, created=created, alias_moved=moved)
    return registered
