"""Which two models are compared, on which rows: resolved from run ids or model URIs, by lineage.

A policy is given either as its training run id (``train_a_run`` / ``train_b_run``; "" = the latest FINISHED run
of that step in the experiment) or as a model URI (``models:/movielens_ctr_ab@PolicyA``, ``models:/name/3``,
``models:/m-<id>``, ``runs:/<run id>/model``). Either way the training run is found, because it names the
prepare run whose test split both policies are scored on, and it holds the parameters cross-validation refits
with. The two policies must come from the same prepare run, or the comparison would not be paired.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from ab_router.arms import ARMS, policy_arm
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError, prepare_run_of, resolve_upstream_run
from abtest.tracking.params import effective_params
from abtest.tracking.registry import logged_model_id

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]+)/.+$")


@dataclass(frozen=True)
class PolicySource:
    """One policy to evaluate: where its model is, which run trained it, on which prepare run."""

    policy: str
    model_uri: str
    training_run: str
    prepare_run: str
    params: dict[str, str]


def training_run_of(model_uri: str) -> str:
    """The id of the run that logged the model at ``model_uri`` (registry alias/version, logged model, runs:/)."""
    client = MlflowClient()
    if match := _ALIAS_URI.match(model_uri):
        return client.get_model_version_by_alias(match["name"], match["alias"]).run_id
    if match := _VERSION_URI.match(model_uri):
        return client.get_model_version(match["name"], match["version"]).run_id
    if model_id := logged_model_id(model_uri):
        return mlflow.get_logged_model(model_id).source_run_id
    if match := _RUNS_URI.match(model_uri):
        return match["run_id"]
    raise ValueError(
        f"cannot find the training run of model URI {model_uri!r}; use models:/<name>@<alias>, "
        "models:/<name>/<version>, models:/m-<model id> or runs:/<run id>/<path>"
    )


def resolve_policy(policy: str, *, run_id: str, model_uri: str) -> PolicySource:
    """Resolve policy "A" or "B" from a training run id or a model URI (not both); "" for both = latest run."""
    if policy not in ARMS:
        raise ValueError(f"policy must be one of {sorted(ARMS)}, got {policy!r}")
    step = policy_arm(policy).train_entry_point
    if run_id and model_uri:
        raise ValueError(
            f"policy {policy}: give a training run id ({run_id!r}) or a model URI ({model_uri!r}), not both"
        )
    client = MlflowClient()
    if model_uri:
        parameter = policy_arm(policy).uri_param
        try:
            run = client.get_run(training_run_of(model_uri))
        except (mlflow.exceptions.MlflowException, ValueError) as exc:
            raise LineageError(
                f"policy {policy}: cannot resolve {parameter}={model_uri!r}: {getattr(exc, 'message', exc)}"
            ) from exc
        if run.data.tags.get(tags.STEP) != step:
            log.warning(
                "policy %s: model %s was logged by a %r run, not %r",
                policy,
                model_uri,
                run.data.tags.get(tags.STEP),
                step,
            )
    else:
        run = client.get_run(resolve_upstream_run(step, run_id, {}, how_to_make=f"mlflow run . -e {step}"))
        model_uri = run.data.tags.get(tags.MODEL_URI, "")
        if not model_uri:
            raise LineageError(f"{step} run {run.info.run_id} has no tag {tags.MODEL_URI}; rerun {step}")
    params = effective_params(run)
    prepare_run = prepare_run_of(run)
    log.info(
        "policy %s: model %s from %s run %s (prepare run %s)",
        policy,
        model_uri,
        step,
        run.info.run_id,
        prepare_run,
    )
    return PolicySource(
        policy=policy, model_uri=model_uri, training_run=run.info.run_id, prepare_run=prepare_run, params=params
    )


def shared_prepare_run(source_a: PolicySource, source_b: PolicySource, *, requested: str) -> str:
    """The prepare run both policies were trained on; an error if they differ or contradict ``requested``."""
    if source_a.prepare_run != source_b.prepare_run:
        raise LineageError(
            f"policies were trained on different prepare runs (A: {source_a.prepare_run}, B: "
            f"{source_b.prepare_run}); a paired comparison needs one test split: retrain on the same prepare run"
        )
    if requested and requested != source_a.prepare_run:
        raise LineageError(
            f"prepare_run={requested!r} was requested but both policies were trained on {source_a.prepare_run}"
        )
    return source_a.prepare_run
