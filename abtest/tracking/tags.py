"""Every ``abtest.*`` tag the product sets on runs and model versions, and how long a tag value may be.

Writers and readers import the names from here, so a tag is spelled once. Run tags hold lineage (which run fed
which), the resolved value of a parameter `mlflow run` already logged as "", and each step's headline result;
model-version tags make the registry answer "where did this version come from" on their own.
"""

from __future__ import annotations

PREFIX = "abtest."
# Long texts (a decision's reason, a readout's sentence) are cut to this many characters on run tags ...
VALUE_CHARS = 5000
# ... and a failed step's reason and the evaluation copied onto a model version to this many.
SHORT_VALUE_CHARS = 500

# -- every step run ---------------------------------------------------------------------------------------------
STEP = "abtest.step"  # the entry point, so lineage look-ups work with or without `mlflow run`
ERROR = "abtest.error"  # on a failed step: "<Type>: <message>"
RESOLVED_PREFIX = "abtest.resolved."  # + param name: the value used where `mlflow run` logged ""
# Where the run's process runs, so a later main can tell a run whose process is gone (abtest/tracking/stale.py).
HOST = "abtest.host"
PID = "abtest.pid"
PROCESS_START = "abtest.process_start"  # "<boot id>:<start in clock ticks since boot>" ("" off Linux)
KILLED_REASON = "abtest.killed_reason"  # on a run main marked KILLED: why (process gone, stopped with a failure)
# -- main and its reuse rule ------------------------------------------------------------------------------------
CODE_VERSION = "abtest.code_version"
UPSTREAM = "abtest.upstream"
ENV_MANAGER = "abtest.env_manager"
STALE_RUNS = "abtest.stale_runs"  # on main: the runs it found RUNNING with their process gone, marked KILLED
# -- lineage between steps --------------------------------------------------------------------------------------
PREPARE_RUN = "abtest.prepare_run"  # on training, evaluate, simulate runs and policy / router versions
MODEL_URI = "abtest.model_uri"  # on a training run: its logged model
DATA_SOURCE = "abtest.data_source"
RAW_LOCATION = "abtest.raw_location"
# -- evaluate ---------------------------------------------------------------------------------------------------
CV_SCHEME = "abtest.cv_scheme"
DECISION = "abtest.decision"  # also simulate's readout decision
WINNER = "abtest.winner"
DECISION_REASON = "abtest.decision_reason"
PRIMARY_METRIC = "abtest.primary_metric"
# -- register / router / demo / simulate ------------------------------------------------------------------------
MODEL_NAME = "abtest.model_name"
SOURCE_RUN = "abtest.source_run"
POLICY = "abtest.policy"
DATA_DIGEST = "abtest.data_digest"
EVALUATE_RUN = "abtest.evaluate_run"
POLICY_MODEL_NAME = "abtest.policy_model_name"
ROUTER_VERSION = "abtest.router_version"
ROUTER_URI = "abtest.router_uri"
# The router version's assignment rule, one tag per field of ab_router.assignment.AssignmentConfig.
SPLIT = "abtest.split"  # the share of users sent to B
SALT = "abtest.salt"
ASSIGNMENT_RULE = "abtest.assignment"  # hash | modulo
ASSIGNMENT: dict[str, str] = {"split": SPLIT, "salt": SALT, "assignment": ASSIGNMENT_RULE}
# The analysis plan (abtest.experiment.plan.AnalysisPlan as JSON), fixed when `router` registers the version.
ANALYSIS_PLAN = "abtest.analysis_plan"
# -- analyze (the experiment readout from the decision log and events) and promote --------------------------------
# An analyze run also sets DECISION (the sentence), WINNER (A | B | none), PRIMARY_METRIC and ROUTER_VERSION.
HEALTHY = "abtest.healthy"  # "true" when every health check passed
HEALTH_FAILURES = "abtest.health_failures"  # the failed checks' names, comma-separated ("" when healthy)
GUARDRAILS_HELD = "abtest.guardrails_held"  # "true" when every guardrail held its non-inferiority margin
PLAN_OVERRIDDEN = "abtest.plan_overridden"  # "true" when analyze was told to change the planned primary metric
ANALYZE_RUN = "abtest.analyze_run"  # on a promoted version and a ramped router run: the readout it acted on
CHAMPION_ALIAS = "champion"  # MLflow's champion/challenger convention: the alias promote moves
PROMOTION = "abtest.promotion"  # on a promote run: what moved where, on which readout
PROMOTION_FORCED = "abtest.promotion_forced"  # promote run and moved-to version: "true" when -P force=true acted
RAMPED_FROM = "abtest.ramped_from"  # on a ramped router version: the router version whose readout it ramps


def policy_version(arm: str) -> str:
    """The tag holding the registered version of ``arm``'s policy (register, router runs and router versions)."""
    return f"abtest.policy_{arm.lower()}_version"


def run_of(parameter: str) -> str:
    """The tag holding the run id a step used for its ``parameter`` (register's ``abtest.train_a_run``, ...)."""
    return f"{PREFIX}{parameter}"


def step_run_id(entry_point: str) -> str:
    """On main's run: the run id of one step of the pipeline."""
    return f"abtest.steps.{entry_point}.run_id"


def step_outcome(entry_point: str) -> str:
    """On main's run: whether one step ran, was reused or failed."""
    return f"abtest.steps.{entry_point}.outcome"


def summarised(entry_point: str, tag: str) -> str:
    """On main's run: a child's ``abtest.<tag>`` repeated as ``abtest.<entry point>.<tag>``."""
    return f"abtest.{entry_point}.{tag.removeprefix(PREFIX)}"


def unprefixed(tag: str) -> str:
    """``abtest.decision`` -> ``decision``: a tag's name where the prefix would only repeat the context."""
    return tag.removeprefix(PREFIX)


def cut(value: str, limit: int = VALUE_CHARS) -> str:
    """``value`` shortened to ``limit`` characters, the longest a tag of ours holds."""
    return value[:limit]
