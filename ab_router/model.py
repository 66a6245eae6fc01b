"""The served A/B router: a pyfunc model that assigns each request's user to policy A or B and scores the item.

Input: one row per (user_id, item_id) pair to score, both ``long``, and optionally ``request_id`` (string); any
extra column is dropped by MLflow's schema enforcement. Output, one row per input row in the same order:

    user_id, item_id, policy ("A"/"B"), model_name, model_version, score (P(positive) from the user's policy),
    bucket (the user's assignment bucket), cold_user, cold_item (the lookup fell back to defaults), request_id
    (the row's input value, else one id generated per request)

With ``ABTEST_DECISION_LOG`` set where the router is loaded, every answered row is also recorded before
``predict`` returns (``ab_router.decision_log``).

Everything it needs travels with it as model artifacts: both policy models (``models:/<name>@PolicyA`` /
``@PolicyB``, downloaded by MLflow when the router is logged, so moving an alias needs a re-logged router), the
feature look-up tables of the `prepare` run, and this package as code. The assignment rule and the bundled policy
versions are in the model config.

Inference params (QA only): ``split`` overrides the share of users sent to B for that request, ``force_policy``
("A"/"B"; "" = no forcing) sends every row to one arm. Invalid values are rejected with HTTP 400.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from threadpoolctl import ThreadpoolController

from ab_router.arms import EXPERIMENT_ARMS, TREATMENT, policy_arm
from ab_router.assignment import AssignmentConfig, assign_arms, check_split
from ab_router.decision_log import DecisionLog, model_directory, request_ids, router_identity
from ab_router.features import FeatureLookup
from ab_router.linear import fast_scorer, probe_rows
from ab_router.policy import Predictor, positive_scores
from ab_router.records import REQUEST_ID
from ab_router.schema import ITEM_ID, ROUTER_OUTPUT, USER_ID, feature_dtypes, to_feature_frame

log = logging.getLogger(__name__)

# Keys of the router's artifacts (paths or models:/ URIs given at log time) and of its model config.
POLICY_ARTIFACTS: dict[str, str] = {arm: policy_arm(arm).router_artifact for arm in EXPERIMENT_ARMS}
USER_FEATURES_ARTIFACT = "user_features"
ITEM_FEATURES_ARTIFACT = "item_features"
FEATURE_DEFAULTS_ARTIFACT = "feature_defaults"


def code_digest() -> str:
    """SHA-256 of the ``ab_router`` sources this process imported (file names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def router_config(
    assignment: AssignmentConfig, *, versions: Mapping[str, tuple[str, str]], router_name: str = ""
) -> dict[str, Any]:
    """The model config the router is logged with: the assignment rule, per arm (model name, version), and the
    name it is registered under ("" = unknown; the decision log's fallback, ``ab_router.decision_log``)."""
    missing = [arm for arm in EXPERIMENT_ARMS if arm not in versions]
    if missing:
        raise ValueError(
            f"versions must name a (model_name, model_version) for arms {list(EXPERIMENT_ARMS)}; missing {missing}"
        )
    return {
        "split": assignment.split,
        "salt": assignment.salt,
        "assignment": assignment.assignment,
        # What load_context compares with the code it runs (it warns when a process imported other code).
        "code_digest": code_digest(),
        "router_name": router_name,
        "arms": {
            arm: {"model_name": str(versions[arm][0]), "model_version": str(versions[arm][1])}
            for arm in EXPERIMENT_ARMS
        },
    }


# The router's output columns as MLflow types (from ab_router.schema.ROUTER_OUTPUT): signature and empty answer.
OUTPUT_TYPES: dict[str, DataType] = {column: DataType[kind] for column, kind in ROUTER_OUTPUT.items()}


def router_signature(*, split: float) -> ModelSignature:
    """Input/output schema and the inference params (``split`` defaults to the configured split).

    ``request_id`` is an optional input: the caller's id of the request, copied to the output and the decision log.
    """
    inputs = Schema(
        [
            ColSpec(DataType.long, USER_ID),
            ColSpec(DataType.long, ITEM_ID),
            ColSpec(DataType.string, REQUEST_ID, required=False),
        ]
    )
    outputs = Schema([ColSpec(kind, column) for column, kind in OUTPUT_TYPES.items()])
    params = ParamSchema(
        [ParamSpec("split", DataType.double, float(split)), ParamSpec("force_policy", DataType.string, "")]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def empty_output() -> pd.DataFrame:
    """The router's answer to a request without rows: no rows, every output column with its dtype."""
    # pandas keeps strings as object columns; numpy's own string dtype would be fixed-width.
    return pd.DataFrame(
        {
            column: pd.Series(dtype=object if kind == DataType.string else kind.to_numpy())
            for column, kind in OUTPUT_TYPES.items()
        }
    )


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE is what the scoring server turns into HTTP 400.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class _NativePredictor:
    """A policy's own model object with the call that yields probabilities (``predict`` for positive_scores)."""

    predict: Callable[[pd.DataFrame], Any]


def native_scorer(model: mlflow.pyfunc.PyFuncModel, probe: pd.DataFrame | None = None) -> Predictor:
    """The policy's native model when its flavor is known, else the pyfunc model itself.

    The router hands each policy a frame that ``to_feature_frame`` already typed to the schema, so the policy's
    pyfunc schema enforcement would only repeat that check: it was most of a single-row LightGBM call (~3.6 of
    4.2 ms). Calling the native model skips it; an unknown flavor keeps the pyfunc path. A scikit-learn
    pipeline is compiled to numpy (``ab_router.linear``) when it reproduces ``predict_proba`` on ``probe``.
    """
    flavors = model.metadata.flavors
    raw = model.get_raw_model()
    if "lightgbm" in flavors and hasattr(raw, "predict") and not hasattr(raw, "predict_proba"):
        return _NativePredictor(raw.predict)  # a Booster: predict is P(positive)
    if "sklearn" in flavors and hasattr(raw, "predict_proba"):
        if probe is None:
            return _NativePredictor(raw.predict_proba)
        return _NativePredictor(fast_scorer(raw, probe))
    return model


def probe_features(lookup: FeatureLookup, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """Typed feature rows to check a compiled policy against its own model: known pairs, an unknown one, and
    the same rows with missing numbers and unknown codes (``ab_router.linear.probe_rows``)."""
    pairs = pd.DataFrame(
        {USER_ID: [*user_ids[:4].tolist(), -1], ITEM_ID: [*item_ids[:4].tolist(), -1]}, dtype=np.int64
    )
    example = to_feature_frame(lookup.assemble(pairs))
    integer = [c for c, dtype in feature_dtypes().items() if dtype is np.int64]
    return to_feature_frame(probe_rows(example, integer))


class ABRouterModel(mlflow.pyfunc.PythonModel):
    """Sticky A/B assignment by user, then the assigned policy's score for each (user, item) row."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load both policies and the feature tables from the router's artifacts; read the config."""
        config = dict(context.model_config or {})
        self.assignment = AssignmentConfig(
            split=float(config["split"]), salt=str(config["salt"]), assignment=config["assignment"]
        )
        self.arms: dict[str, dict[str, str]] = config["arms"]
        if config.get("code_digest") not in (None, code_digest()):
            # MLflow puts the bundled code on sys.path, but a process that had already imported another
            # ab_router (a working tree that changed since `router` ran) keeps using that one.
            log.warning(
                "this process imported ab_router code that differs from the code bundled with the router; "
                "results here may differ from the served router (mlflow models serve uses the bundled code)"
            )
        artifacts = context.artifacts
        self.threads = ThreadpoolController()
        self.policies = {arm: mlflow.pyfunc.load_model(artifacts[key]) for arm, key in POLICY_ARTIFACTS.items()}
        user_table = pd.read_parquet(artifacts[USER_FEATURES_ARTIFACT])
        item_table = pd.read_parquet(artifacts[ITEM_FEATURES_ARTIFACT])
        # Indexed once here, so a request pays only for the gather (10,000 rows in milliseconds).
        self.features = FeatureLookup(
            user_table, item_table, json.loads(Path(artifacts[FEATURE_DEFAULTS_ARTIFACT]).read_text())
        )
        user_ids, item_ids = (
            table[key].to_numpy(np.int64) for table, key in ((user_table, USER_ID), (item_table, ITEM_ID))
        )
        probe = probe_features(self.features, user_ids, item_ids)
        self.scorers = {arm: native_scorer(model, probe) for arm, model in self.policies.items()}
        log.info("router loaded: %s, arms %s", self.assignment, self.arms)
        identity = router_identity(
            model_directory(artifacts[USER_FEATURES_ARTIFACT]), config_name=str(config.get("router_name") or "")
        )
        self.decision_log = DecisionLog.from_environment(identity)

    def _resolve_params(self, params: Mapping[str, Any] | None) -> tuple[AssignmentConfig, str]:
        params = dict(params or {})
        force_policy = params.get("force_policy") or ""
        if force_policy not in ("", *EXPERIMENT_ARMS):
            raise _bad_request(f"param force_policy must be one of {['', *EXPERIMENT_ARMS]}, got {force_policy!r}")
        split = params.get("split")
        if split is None or float(split) == self.assignment.split:
            return self.assignment, force_policy
        try:
            split = check_split(split)
        except ValueError as exc:
            raise _bad_request(f"param {exc}") from None
        if self.assignment.assignment == "modulo":
            raise _bad_request(
                f"param split cannot override a 'modulo' router (fixed 50/50 by user_id % 2), got {split}"
            )
        return AssignmentConfig(split=split, salt=self.assignment.salt, assignment="hash"), force_policy

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Route and score each (user_id, item_id) row; see the module docstring for the columns."""
        started, event_time = time.perf_counter(), datetime.now(UTC)
        missing = [c for c in (USER_ID, ITEM_ID) if c not in model_input.columns]
        if missing:
            raise _bad_request(f"router input is missing columns {missing}; it needs {[USER_ID, ITEM_ID]} (long)")
        assignment, force_policy = self._resolve_params(params)
        if len(model_input) == 0:
            # Nothing to score: the policies' preprocessing rejects zero rows, so answer with no rows here.
            return empty_output()
        pairs = model_input.loc[:, [USER_ID, ITEM_ID]].reset_index(drop=True)
        assigned = assign_arms(pairs[USER_ID].to_numpy(), assignment)
        policy = np.full(len(pairs), force_policy) if force_policy else assigned.policy
        features = self.features.assemble(pairs)
        scores = np.full(len(pairs), np.nan)
        # Each policy scores only its own rows: the router costs one model call per arm, not two per row.
        # One OpenMP thread: LightGBM's default (all cores) spin-waits for ~20 ms per small request on a busy
        # machine and gains nothing on 10,000 rows; a server scales with workers instead.
        with self.threads.limit(limits=1, user_api="openmp"):
            for arm in EXPERIMENT_ARMS:
                rows = policy == arm
                if rows.all():  # one arm only (every single-row request): skip the boolean row selection
                    scores = positive_scores(self.scorers[arm], to_feature_frame(features))
                elif rows.any():
                    scores[rows] = positive_scores(self.scorers[arm], to_feature_frame(features.loc[rows]))
        names = np.array([self.arms[arm]["model_name"] for arm in EXPERIMENT_ARMS], dtype=object)
        versions = np.array([self.arms[arm]["model_version"] for arm in EXPERIMENT_ARMS], dtype=object)
        arm_index = (policy == TREATMENT).astype(np.int64)
        output = pd.DataFrame(
            {
                USER_ID: features[USER_ID].to_numpy(dtype=np.int64),
                ITEM_ID: features[ITEM_ID].to_numpy(dtype=np.int64),
                "policy": policy.astype(object),
                "model_name": names[arm_index],
                "model_version": versions[arm_index],
                "score": scores,
                "bucket": assigned.bucket,
                "cold_user": features["cold_user"].to_numpy(dtype=bool),
                "cold_item": features["cold_item"].to_numpy(dtype=bool),
                REQUEST_ID: request_ids(model_input),
            }
        )
        if self.decision_log is not None:
            # Before returning: a request answered 200 has its rows in the log (ab_router.sinks says how durably).
            latency_ms = (time.perf_counter() - started) * 1000.0
            forced = bool(force_policy)
            self.decision_log.record(
                output, event_time=event_time, assignment=assignment, forced=forced, latency_ms=latency_ms
            )
        return output
