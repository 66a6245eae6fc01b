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

from ab_router.arms import EXPERIMENT_ARMS, TREATMENT, policy_arm
from ab_router.assignment import AssignmentConfig, assign_arms, check_split
from ab_router.decision_log import DecisionLog, model_directory, request_ids, router_identity
from ab_router.features import FeatureLookup, pair_ids
from ab_router.linear import MATCH_TOLERANCE, checked_compile, probe_rows
from ab_router.policy import MatrixScorer, booster_scorer, frame_scorer, positive_scores
from ab_router.records import REQUEST_ID
from ab_router.schema import (
    FEATURE_COLUMNS,
    ITEM_ID,
    ROUTER_OUTPUT,
    ROUTER_OUTPUT_COLUMNS,
    USER_ID,
    feature_dtypes,
    to_feature_frame,
)

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


def native_scorer(model: mlflow.pyfunc.PyFuncModel, probe: pd.DataFrame) -> MatrixScorer:
    """How the router scores a policy: on its feature matrix when the flavor allows, else on a typed frame.

    The router assembles each request's features as a float64 matrix (``FeatureLookup.rows``); building a frame
    for it, and the policy's pyfunc schema enforcement on that frame, were most of a request's time. A LightGBM
    Booster predicts on the matrix; a scikit-learn pipeline is compiled to numpy (``ab_router.linear``). Each
    fast path is used only if it reproduces the policy's own model on ``probe`` (typed feature rows with
    missing numbers and unknown codes); otherwise, and for an unknown flavor, the policy gets a frame: its
    native model's (no second schema check), or the pyfunc's.
    """
    flavors = model.metadata.flavors
    raw = model.get_raw_model()
    if "lightgbm" in flavors and hasattr(raw, "predict") and not hasattr(raw, "predict_proba"):
        # A Booster: predict is P(positive). Its reference is the policy's pyfunc, what the router used to call.
        try:
            fast = booster_scorer(raw)
            matrix = probe.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
            difference = float(np.max(np.abs(fast(matrix) - positive_scores(model, probe))))
        except (ValueError, MlflowException) as exc:
            log.warning("policy B is scored on a frame: the booster cannot score the feature matrix (%s)", exc)
        else:
            if difference <= MATCH_TOLERANCE:
                return MatrixScorer("lightgbm Booster", fast)
            log.warning("policy B is scored on a frame: Booster.predict on the matrix differs by %.3g", difference)
        return MatrixScorer("predict on a frame", frame_scorer(_NativePredictor(raw.predict)))
    if "sklearn" in flavors and hasattr(raw, "predict_proba"):
        compiled = checked_compile(raw, probe)
        if compiled is not None:
            return MatrixScorer("compiled pipeline", compiled.matrix_predictor())
        return MatrixScorer("predict_proba on a frame", frame_scorer(_NativePredictor(raw.predict_proba)))
    return MatrixScorer("pyfunc on a frame", frame_scorer(model))


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
        # Per arm (EXPERIMENT_ARMS order), the answer's string columns, which each request takes rows from.
        # Object arrays, as empty_output's: a pandas string array costs ~30 us per take, a tenth of a request.
        self.arm_columns = {
            "policy": np.array(EXPERIMENT_ARMS, dtype=object),
            **{
                column: np.array([self.arms[arm][column] for arm in EXPERIMENT_ARMS], dtype=object)
                for column in ("model_name", "model_version")
            },
        }
        log.info(
            "router loaded: %s, arms %s, scored by %s",
            self.assignment,
            self.arms,
            {arm: scorer.kind for arm, scorer in self.scorers.items()},
        )
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
        names = model_input.columns.tolist()  # `in` on a new frame's columns builds their hash table
        missing = [c for c in (USER_ID, ITEM_ID) if c not in names]
        if missing:
            raise _bad_request(f"router input is missing columns {missing}; it needs {[USER_ID, ITEM_ID]} (long)")
        assignment, force_policy = self._resolve_params(params)
        if len(model_input) == 0:
            # Nothing to score: the policies' preprocessing rejects zero rows, so answer with no rows here.
            return empty_output()
        user_ids, item_ids = pair_ids(model_input)
        assigned = assign_arms(user_ids, assignment)
        policy = np.full(len(user_ids), force_policy) if force_policy else assigned.policy
        features = self.features.rows(user_ids, item_ids)
        arm_index = (policy == TREATMENT).astype(np.intp)  # position in EXPERIMENT_ARMS: 0 = A, 1 = B
        output = output_frame(
            {
                USER_ID: user_ids,
                ITEM_ID: item_ids,
                **{column: values.take(arm_index) for column, values in self.arm_columns.items()},
                "score": self._scores(policy, features.matrix),
                "bucket": assigned.bucket,
                "cold_user": features.cold_user,
                "cold_item": features.cold_item,
                REQUEST_ID: np.array(request_ids(model_input), dtype=object),
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

    def _scores(self, policy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Each row's score from its arm's policy: one model call per arm present, on that arm's rows only."""
        scores = np.full(len(matrix), np.nan)
        for arm in EXPERIMENT_ARMS:
            rows = policy == arm
            if rows.all():  # one arm only (every single-row request): skip the boolean row selection
                return self.scorers[arm].score(matrix)
            if rows.any():
                scores[rows] = self.scorers[arm].score(matrix[rows])
        return scores


_OUTPUT_INDEX = pd.Index(ROUTER_OUTPUT_COLUMNS)


def output_frame(outputs: Mapping[str, Any]) -> pd.DataFrame:
    """The answer: one array per ROUTER_OUTPUT column (equal lengths, final dtypes), in ROUTER_OUTPUT's order.

    pandas' public constructor re-checks and re-infers every column (~0.3 ms for these columns, a third of a
    single-row request); these arrays already have their dtypes, so they go into the frame as they are.
    """
    arrays = [outputs[column] for column in ROUTER_OUTPUT_COLUMNS]
    return pd.DataFrame._from_arrays(
        arrays, columns=_OUTPUT_INDEX, index=pd.RangeIndex(len(arrays[0])), verify_integrity=False
    )
