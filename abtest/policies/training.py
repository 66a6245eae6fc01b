"""What the two training steps (train_a, train_b) share: lineage to the prepare run and the MLflow logging.

The fitting itself lives in :mod:`abtest.policies.models` (pure); this module talks to MLflow so the step CLIs
stay thin. The lineage is always in the tag ``abtest.prepare_run``; parameters resolved from "" are kept as
described in :mod:`abtest.tracking.params`.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient

from ab_router import schema
from abtest.config import project_file
from abtest.policies.models import classification_metrics, labels_of
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError, PreparedData, load_prepared, resolve_upstream_run, step_run
from abtest.tracking.params import log_resolved_params

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
HOW_TO_PREPARE = "mlflow run . -e prepare"


@dataclass(frozen=True)
class PrepareLineage:
    """The prepare run a training step reads, and the data parameters that identify it."""

    run_id: str
    dataset: str
    split: str


def resolve_prepare_run(
    *, prepare_run: str, dataset: str, split: str, defaults: Mapping[str, str]
) -> PrepareLineage:
    """Pick the prepare run to train on.

    With ``prepare_run`` given, that run is checked (exists, FINISHED, is a prepare run) and its own dataset and
    split are used; a non-empty ``dataset`` / ``split`` that contradicts it is an error. Without it, empty
    ``dataset`` / ``split`` take prepare's ``defaults`` (its MLproject defaults) and the latest FINISHED prepare
    run with those values in the current experiment is used; if there is none, the error says which command makes
    one.
    """
    requested = {"dataset": dataset, "split": split}
    if prepare_run:
        run_id = resolve_upstream_run("prepare", prepare_run, {}, how_to_make=HOW_TO_PREPARE)
        actual = MlflowClient().get_run(run_id).data.params
        clashes = {k: (v, actual.get(k)) for k, v in requested.items() if v and v != actual.get(k)}
        if clashes:
            shown = ", ".join(f"{k}={asked!r} but the run has {had!r}" for k, (asked, had) in clashes.items())
            raise LineageError(f"prepare run {run_id} does not match the requested data: {shown}")
        return PrepareLineage(run_id=run_id, dataset=actual.get("dataset", ""), split=actual.get("split", ""))
    wanted = {k: v or defaults[k] for k, v in requested.items()}
    run_id = resolve_upstream_run("prepare", "", wanted, how_to_make=HOW_TO_PREPARE)
    return PrepareLineage(run_id=run_id, **wanted)


def resolve_training_inputs(
    params: Mapping[str, Any], *, prepare_defaults: Mapping[str, str], entry_point: str
) -> tuple[PrepareLineage, dict[str, Any]]:
    """A training step's prepare run, and its parameters with that run's id, dataset and split filled in.

    ``prepare_defaults`` are prepare's own defaults (MLproject), for a ``dataset`` / ``split`` left "".
    """
    lineage = resolve_prepare_run(
        prepare_run=params["prepare_run"],
        dataset=params["dataset"],
        split=params["split"],
        defaults=prepare_defaults,
    )
    resolved = {**params, "prepare_run": lineage.run_id, "dataset": lineage.dataset, "split": lineage.split}
    log.info(
        "%s: training on prepare run %s (%s, split=%s)",
        entry_point,
        lineage.run_id,
        lineage.dataset,
        lineage.split,
    )
    return lineage, resolved


@dataclass(frozen=True)
class TrainingRun:
    """A training step's open run and the prepare run's tables it trains on."""

    run: mlflow.ActiveRun
    data: PreparedData
    frames: dict[str, pd.DataFrame]  # train and val: what the metrics and the logged inputs cover


@contextmanager
def training_run(
    entry_point: str, params: Mapping[str, Any], *, prepare_defaults: Mapping[str, str]
) -> Iterator[TrainingRun]:
    """Resolve the prepare run, then open the step's run with its resolved params, tables and logged inputs.

    The lineage is resolved before the run opens, so a missing or mismatched prepare run leaves no run behind
    when the step runs in process.
    """
    lineage, resolved = resolve_training_inputs(params, prepare_defaults=prepare_defaults, entry_point=entry_point)
    with step_run(entry_point) as run:
        log_resolved_params(resolved)
        data = load_prepared(lineage.run_id)
        require_feature_columns(data)
        frames = {"train": data.train, "val": data.val}
        log_inputs(frames, prepare_run_id=lineage.run_id)
        yield TrainingRun(run=run, data=data, frames=frames)


def log_inputs(splits: Mapping[str, pd.DataFrame], *, prepare_run_id: str) -> None:
    """Record the prepare run as lineage tag and the splits used as MLflow dataset inputs."""
    mlflow.set_tag(tags.PREPARE_RUN, prepare_run_id)
    for split, frame in splits.items():
        # No `runs:/` source: MLflow has no dataset-source resolver for it (nor for mlflow-artifacts:/), so the
        # prepare run id goes into the dataset name, and the digest identifies the exact rows.
        with without_integer_column_hint():
            dataset = mlflow.data.from_pandas(
                frame, name=f"prepare-{prepare_run_id}/{split}", targets=schema.LABEL
            )
        mlflow.log_input(dataset, context="training" if split == "train" else "validation")


def log_split_metrics(frames: Mapping[str, pd.DataFrame], scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Log ``<split>_<metric>`` (auc, pr_auc, logloss, brier) for every split scored; returns them."""
    metrics = {
        f"{split}_{name}": value
        for split, frame in frames.items()
        for name, value in classification_metrics(labels_of(frame), scores[split]).items()
    }
    mlflow.log_metrics(metrics)
    return metrics


def log_feature_list() -> None:
    """The model's input columns by role, so a reader of the run sees what the policy consumed."""
    mlflow.log_dict(
        {
            "features": list(schema.FEATURE_COLUMNS),
            "numeric": list(schema.NUMERIC_FEATURES),
            "categorical": list(schema.CATEGORICAL_FEATURES),
            "genre": list(schema.GENRE_COLUMNS),
            "dtypes": {f.name: f.dtype for f in schema.FEATURES},
            # the directions policy B is constrained to with monotone=schema (+1 up, -1 down)
            "monotone": {f.name: f.monotone for f in schema.FEATURES if f.monotone},
        },
        "features.json",
    )


def signature_and_example(frame: pd.DataFrame, predictions: Any) -> tuple[ModelSignature, pd.DataFrame]:
    """Signature over the raw feature frame (schema dtypes) and a 5-row input example."""
    features = schema.to_feature_frame(frame)
    with without_integer_column_hint():
        signature = infer_signature(features, predictions)
    return signature, features.head(5)


@contextmanager
def without_integer_column_hint() -> Iterator[None]:
    """Silence MLflow's hint that integer columns cannot hold missing values: ours never do (unknown = -1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        yield


def pip_requirements(*packages: str) -> list[str]:
    """Pinned requirements of the logged model, read from requirements.txt (pins are written only there).

    Passing them explicitly also spares ``log_model`` its slow requirement inference.
    """
    pins: dict[str, str] = {}
    for line in project_file("requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins[re.split(r"[=<>~! \[]", line, maxsplit=1)[0].lower()] = line
    missing = [p for p in packages if p.lower() not in pins]
    if missing:
        raise KeyError(f"requirements.txt pins no {missing}; it pins {sorted(pins)}")
    return [pins[p.lower()] for p in packages]


def set_model_uri(model_uri: str) -> None:
    """The tag downstream steps read to find this run's model."""
    mlflow.set_tag(tags.MODEL_URI, model_uri)


def log_curve(curve: pd.DataFrame) -> None:
    """Per-iteration validation metrics as MLflow metric histories (``curve_val_auc`` at step = iteration)."""
    metrics = [
        Metric(f"curve_{column}", float(value), timestamp, int(iteration))
        for column in curve.columns
        if column.startswith("val_")
        for iteration, value in zip(curve["iteration"], curve[column], strict=True)
        for timestamp in [int(time.time() * 1000)]
    ]
    run_id = mlflow.active_run().info.run_id
    # The tracking API accepts at most 1000 metrics per batch.
    for start in range(0, len(metrics), 1000):
        MlflowClient().log_batch(run_id, metrics=metrics[start : start + 1000])


def require_feature_columns(data: PreparedData) -> None:
    """Fail early, naming the run and the fix, when a prepare run predates the current feature schema."""
    for split, frame in data.splits.items():
        missing = [c for c in schema.FEATURE_COLUMNS if c not in frame.columns]
        if missing:
            raise LineageError(
                f"prepare run {data.run_id} ({split} split) lacks feature columns {missing}: it was made with an "
                f"older feature schema; make a new one with: {HOW_TO_PREPARE}"
            )
