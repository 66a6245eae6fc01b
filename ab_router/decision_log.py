"""The served router's decision log: every scored row recorded where ``ABTEST_DECISION_LOG`` says.

The router reads the environment once, in ``load_context`` (so once per serving worker), and logs one line saying
where it writes or that it writes nothing. Then every request's rows are one :class:`~ab_router.sinks.Batch` of
``ab_router.records.DECISIONS`` appended before ``predict`` returns, so an answered request is recorded (the
durability each sink gives is in ``ab_router.sinks``).

What a record knows that the served answer does not:

- ``request_id``: the caller's optional ``request_id`` input column (a row whose value is missing or empty gets
  the request's own id), else one id generated per request (uuid4 hex) shared by its rows; the router also
  returns it, so the application can join its impressions to the decision.
- the router's registered name and version. A loaded pyfunc is not told the URI it was loaded from, so they are
  resolved at load, first found wins:

  1. ``ABTEST_ROUTER_NAME`` / ``ABTEST_ROUTER_VERSION`` in the serving environment (a router served from a local
     copy; overrides the rest, with a warning if it contradicts the registry's file);
  2. the ``registered_model_meta`` file MLflow writes into a model it downloads through a ``models:/`` URI
     (``mlflow models serve -m models:/movielens_ctr_router@router`` and ``mlflow.pyfunc.load_model`` both do),
     which names the registered model and its resolved version;
  3. the model config's ``router_name`` (known when `router` logs the model, before the version exists), and
     version "" (not registered, or loaded from a run or a local directory).

  No tracking server is asked: the router must load and serve where none is reachable.
- the split in force for the row (the configured one or the request's ``split`` param), the assignment rule, the
  salt, whether ``force_policy`` chose the arm (``forced``; such rows were not randomised), the router's own time
  for the request (``latency_ms``, from the start of ``predict`` to just before the write) and ``writer``
  (host:pid of the serving process).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from ab_router.assignment import AssignmentConfig
from ab_router.records import DECISION_LOG_ENV, DECISIONS, REQUEST_ID
from ab_router.sinks import Batch, RecordSink, sink_from_environment, writer_id

log = logging.getLogger(__name__)

ROUTER_NAME_ENV = "ABTEST_ROUTER_NAME"
ROUTER_VERSION_ENV = "ABTEST_ROUTER_VERSION"
# Written by MLflow (mlflow.store.artifact.models_artifact_repo) into a model downloaded through models:/.
REGISTERED_MODEL_META_FILE = "registered_model_meta"
MLMODEL_FILE = "MLmodel"

# The output columns a decision record copies, under the record's name.
_FROM_OUTPUT: dict[str, str] = {
    "user_id": "user_id",
    "item_id": "item_id",
    "arm": "policy",
    "bucket": "bucket",
    "model_name": "model_name",
    "model_version": "model_version",
    "score": "score",
    "cold_user": "cold_user",
    "cold_item": "cold_item",
}


@dataclass(frozen=True)
class RouterIdentity:
    """The router's registered name and version as recorded with every decision, and where they came from."""

    name: str
    version: str
    source: str


def model_directory(artifact_path: str | Path) -> Path | None:
    """The directory of the model that holds ``artifact_path`` (the nearest parent with an MLmodel file)."""
    for parent in list(Path(artifact_path).parents)[:4]:
        if (parent / MLMODEL_FILE).is_file():
            return parent
    return None


def router_identity(
    model_dir: Path | None, *, config_name: str = "", env: Mapping[str, str] | None = None
) -> RouterIdentity:
    """Name and version of the loaded router, resolved as the module docstring says."""
    env = os.environ if env is None else env
    meta: dict = {}
    meta_path = model_dir / REGISTERED_MODEL_META_FILE if model_dir is not None else None
    if meta_path is not None and meta_path.is_file():
        meta = yaml.safe_load(meta_path.read_text()) or {}
    registry_name, registry_version = str(meta.get("model_name") or ""), str(meta.get("model_version") or "")
    env_name, env_version = env.get(ROUTER_NAME_ENV, "").strip(), env.get(ROUTER_VERSION_ENV, "").strip()
    if env_name or env_version:
        contradicts = (env_name and env_name != registry_name) or (env_version and env_version != registry_version)
        if registry_name and contradicts:
            log.warning(
                "%s=%r / %s=%r override what MLflow's registry download says this router is: %s version %s",
                ROUTER_NAME_ENV,
                env_name,
                ROUTER_VERSION_ENV,
                env_version,
                registry_name,
                registry_version,
            )
        name = env_name or registry_name or config_name
        return RouterIdentity(name, env_version or registry_version, "environment")
    if registry_name:
        return RouterIdentity(registry_name, registry_version, str(meta_path))
    return RouterIdentity(config_name, "", "model config" if config_name else "unknown")


def request_ids(model_input: pd.DataFrame) -> list[str]:
    """One request id per row: the ``request_id`` column's value, else one id generated for the request."""
    generated = uuid.uuid4().hex
    if REQUEST_ID not in model_input.columns:
        return [generated] * len(model_input)
    given = model_input[REQUEST_ID].tolist()
    return [value if isinstance(value, str) and value else generated for value in given]


def _announce(message: str, *, warning: bool) -> None:
    """Log the load-time line so it is seen even where nobody configured logging (``mlflow models serve``).

    uvicorn and MLflow configure only their own loggers, so an INFO line of this package would be dropped; a
    stderr handler is added to the package logger only when no handler at all would print it.
    """
    package = logging.getLogger(__name__.split(".")[0])
    if not warning and not log.isEnabledFor(logging.INFO) and not logging.getLogger().handlers:
        if not package.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            package.addHandler(handler)
        package.setLevel(logging.INFO)
    (log.warning if warning else log.info)(message)


class DecisionLog:
    """Appends each request's decisions to a sink; one per loaded router."""

    def __init__(self, sink: RecordSink, identity: RouterIdentity) -> None:
        self.sink = sink
        self.identity = identity

    @classmethod
    def from_environment(
        cls, identity: RouterIdentity, env: Mapping[str, str] | None = None
    ) -> DecisionLog | None:
        """The log ``ABTEST_DECISION_LOG`` names (its sink prepared now, so a bad sink fails the load), or None."""
        sink = sink_from_environment(env)
        if sink is None:
            _announce(f"decision log: {DECISION_LOG_ENV} is unset, this router records no decisions", warning=True)
            return None
        sink.prepare([DECISIONS])
        version = identity.version or "'' (not registered)"
        _announce(
            f"decision log: every scored row goes to {sink.describe()}; router {identity.name!r} "
            f"version {version} (from {identity.source}), writer {writer_id()}",
            warning=False,
        )
        return cls(sink, identity)

    def record(
        self,
        output: pd.DataFrame,
        *,
        event_time: datetime,
        assignment: AssignmentConfig,
        forced: bool,
        latency_ms: float,
    ) -> int:
        """Append one request's answered rows (the router's output, with its ``request_id`` column)."""
        ids = output[REQUEST_ID].tolist()
        per_row = {record: output[column].tolist() for record, column in _FROM_OUTPUT.items()}
        constants = {
            "event_time": event_time,
            "router_name": self.identity.name,
            "router_version": self.identity.version,
            "salt": assignment.salt,
            "assignment": assignment.assignment,
            "split": float(assignment.split),
            "forced": bool(forced),
            "latency_ms": float(latency_ms),
            "writer": writer_id(),
        }
        if ids and ids.count(ids[0]) == len(ids):
            constants[REQUEST_ID] = ids[0]
        else:
            per_row[REQUEST_ID] = ids
        per_row["row"] = np.arange(len(output)).tolist()
        batch = Batch(DECISIONS, len(output), columns=per_row, constants=constants)
        try:
            return self.sink.append(batch)
        except Exception as exc:
            # HTTP 500, not the scoring server's generic 400: the request was fine, recording it failed, and an
            # unrecorded request must not be answered as if it counted.
            raise MlflowException(
                f"decision log: could not record the request's {len(output)} rows "
                f"in {self.sink.describe()}: {exc}",
                error_code=INTERNAL_ERROR,
            ) from exc
