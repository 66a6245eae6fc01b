"""The readout of a real experiment: from its records' per-(day, user) reduction to health, results and a decision.

:func:`readout_of_records` is the one entry point for `analyze` and for `simulate` (which writes the same records):
it reads and reduces the records (:func:`read_records`), then

    analyse_records(inputs, plan, config, pre_period, plan_note=...) -> RecordsReadout

``inputs`` is :class:`ReadoutInputs` (build it from the ingest reduction with :func:`inputs_from_data`): the
``user_days`` frame (one row per (day, user_id): day, user_id, policy, requests, impressions, clicks, score_sum,
cold_impressions), per-arm latency medians, per-(day, arm) newly assigned users and the health counts. ``plan`` is
the :class:`abtest.experiment.plan.AnalysisPlan` recorded with the router version, ``config`` the statistics'
options (:func:`records_config` builds them from the plan), ``pre_period`` the CUPED covariate per user
(:func:`abtest.experiment.traffic.pre_period_activity`).

Order of the readout, as a reader needs it: health first (a failed check means "do not trust this result"), then
the primary metric (delta method, CUPED when it narrows the interval, sequential p-values per day, the Bayesian
probability that B is better), the secondary metrics with Holm's correction, and the guardrails' non-inferiority.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from ab_router.records import CLICK
from ab_router.schema import USER_ID
from abtest.evaluation.decision import NO_WINNER
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.stats import (
    AnalysisConfig,
    LiftResult,
    PowerResult,
    RatioStatistic,
    SequentialLook,
    SrmResult,
    monitor,
    power_analysis,
    ratio_lift,
    srm_test,
)
from abtest.experiment.stats.bayes import BayesResult, normal_posterior
from abtest.experiment.stats.guardrail import GuardrailResult, non_inferiority, ratio_estimate
from abtest.experiment.stats.multiple import holm
from abtest.experiment.stats.sequential import boundary_level

if TYPE_CHECKING:
    from abtest.experiment.ingest.reduce import ExperimentData

log = logging.getLogger(__name__)

# The health checks, in the order the readout shows them, and what each one guards against.
HEALTH_CHECKS: dict[str, str] = {
    "srm": "the arms' user counts match the configured split (chi-square, p >= threshold)",
    "srm_daily": "each day's newly assigned users match the split",
    "users_in_both_arms": "no user was served by both arms (assignment is sticky)",
    "impressions_without_decision": "every impression follows a router decision",
    "outcomes_without_impression": "every outcome follows an impression of its item",
    "requests_never_shown": "every scored request led to an impression",
    "duplicates": "no decision, impression or outcome was recorded twice",
    "events_outside_window": "no impression or outcome of the experiment's requests falls outside the window",
    "other_versions": "no rows from another router version or salt are mixed in",
}
UNTRUSTED = "Do not trust this result"
METRIC_LABELS: dict[str, str] = {"ctr": "CTR (clicks / impression)", "clicks_per_user": "clicks per user"}


@dataclass(frozen=True)
class ReadoutInputs:
    """What the statistics need from the records (the ingest reduction's output, one row per user and day)."""

    user_days: pd.DataFrame
    # day, arm, users (first seen that day); empty = derived from user_days (new_users_by_day)
    new_users: pd.DataFrame = field(default_factory=pd.DataFrame)
    latency_p50_ms: Mapping[str, float] = field(default_factory=dict)  # per arm
    health_counts: Mapping[str, int] = field(default_factory=dict)  # HEALTH_CHECKS key -> offending rows
    health_examples: Mapping[str, str] = field(default_factory=dict)  # HEALTH_CHECKS key -> a few ids


@dataclass(frozen=True)
class HealthCheck:
    """One health check's verdict and what it saw."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class MetricResult:
    """One metric: the lift (unadjusted and CUPED), the one the verdict uses, its posterior and verdict."""

    metric: str
    role: str  # primary | secondary
    lift: LiftResult
    cuped: LiftResult
    used: LiftResult
    bayes: BayesResult
    adjusted_p_value: float  # Holm-adjusted for secondaries; the plain p-value for the primary
    verdict: str  # B better | A better | no difference | not computable

    @property
    def method(self) -> str:
        """Which analysis the verdict rests on."""
        return "CUPED" if self.used is self.cuped else "delta method"


@dataclass(frozen=True)
class RecordsReadout:
    """Everything the readout files, metrics and tags show. Control is arm A, treatment arm B."""

    plan: AnalysisPlan
    plan_note: str
    plan_overridden: bool
    config: AnalysisConfig
    health: tuple[HealthCheck, ...]
    metrics: tuple[MetricResult, ...]
    guardrails: tuple[GuardrailResult, ...]
    arms: pd.DataFrame
    daily: pd.DataFrame  # one row per day, cumulative through that day
    srm: SrmResult
    power: PowerResult
    sequential: tuple[SequentialLook, ...]
    stop_day: int | None
    days_observed: int
    winner: str
    decision: str

    @property
    def healthy(self) -> bool:
        """Every health check passed."""
        return all(check.passed for check in self.health)

    @property
    def health_failures(self) -> list[str]:
        """The names of the failed health checks."""
        return [check.name for check in self.health if not check.passed]

    @property
    def guardrails_held(self) -> bool:
        """Every guardrail held its non-inferiority margin."""
        return all(guardrail.held for guardrail in self.guardrails)

    @property
    def primary(self) -> MetricResult:
        """The plan's primary metric."""
        return self.metrics[0]

    def headline(self) -> dict[str, float]:
        """The run's metrics (finite values only)."""
        values: dict[str, float] = {
            "healthy": float(self.healthy),
            "guardrails_held": float(self.guardrails_held),
            "srm_p_value": self.srm.p_value,
            "days_observed": float(self.days_observed),
            "mde_absolute": self.power.mde_absolute,
            "mde_relative": self.power.mde_relative,
            "sequential_stopped": float(self.stop_day is not None),
            "sequential_boundary_level": _boundary_level(self.config),
        }
        if self.stop_day is not None:
            values["stop_day"] = float(self.stop_day)
        if self.sequential:
            values["sequential_p_value"] = self.sequential[-1].p_value
        for row in self.arms.itertuples(index=False):
            for column in ("users", "requests", "impressions", "clicks", "ctr", "clicks_per_user"):
                values[f"{column}_{row.arm}"] = float(getattr(row, column))
        for result in self.metrics:
            prefix = result.metric
            for name, lift in (("lift", result.lift), ("cuped_lift", result.cuped)):
                for kind, estimate in (("abs", lift.absolute), ("rel", lift.relative)):
                    if estimate is not None:
                        values[f"{prefix}_{name}_{kind}"] = estimate.effect
                        values[f"{prefix}_{name}_{kind}_ci_low"] = estimate.ci_low
                        values[f"{prefix}_{name}_{kind}_ci_high"] = estimate.ci_high
                        values[f"{prefix}_{name}_{kind}_p_value"] = estimate.p_value
            values[f"{prefix}_prob_b_better"] = result.bayes.probability_b_better
            values[f"{prefix}_expected_loss_b"] = result.bayes.expected_loss_b
            values[f"{prefix}_expected_loss_a"] = result.bayes.expected_loss_a
            if result.role == "secondary":
                values[f"{prefix}_holm_p_value"] = result.adjusted_p_value
        for guardrail in self.guardrails:
            values[f"guardrail_{guardrail.name}_difference"] = guardrail.difference
            values[f"guardrail_{guardrail.name}_upper_bound"] = guardrail.upper_bound
            values[f"guardrail_{guardrail.name}_held"] = float(guardrail.held)
        return {key: float(value) for key, value in values.items() if value is not None and np.isfinite(value)}

    def results_table(self) -> pd.DataFrame:
        """One row per metric: A, B, lift with interval, p-value(s), P(B better), expected loss, verdict."""
        rows = []
        for result in self.metrics:
            used = result.used
            absolute, relative = used.absolute, used.relative
            rows.append(
                {
                    "metric": result.metric,
                    "role": result.role,
                    "method": result.method,
                    CONTROL: used.control.adjusted_ratio,
                    TREATMENT: used.treatment.adjusted_ratio,
                    "lift_abs": absolute.effect if absolute else math.nan,
                    "ci_low": absolute.ci_low if absolute else math.nan,
                    "ci_high": absolute.ci_high if absolute else math.nan,
                    "lift_rel": relative.effect if relative else math.nan,
                    "rel_ci_low": relative.ci_low if relative else math.nan,
                    "rel_ci_high": relative.ci_high if relative else math.nan,
                    "p_value": absolute.p_value if absolute else math.nan,
                    "adjusted_p_value": result.adjusted_p_value,
                    "prob_b_better": result.bayes.probability_b_better,
                    "expected_loss_b": result.bayes.expected_loss_b,
                    "expected_loss_a": result.bayes.expected_loss_a,
                    "verdict": result.verdict,
                }
            )
        return pd.DataFrame(rows)

    def guardrail_table(self) -> pd.DataFrame:
        """One row per guardrail."""
        return pd.DataFrame([{**g.__dict__, "status": str(g.status)} for g in self.guardrails])

    def health_table(self) -> pd.DataFrame:
        """One row per health check."""
        return pd.DataFrame([check.__dict__ for check in self.health])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the tables also go to CSV)."""
        return {
            "decision": self.decision,
            "winner": self.winner,
            "healthy": self.healthy,
            "health_failures": self.health_failures,
            "guardrails_held": self.guardrails_held,
            "plan": json_plan(self.plan),
            "plan_note": self.plan_note,
            "plan_overridden": self.plan_overridden,
            "config": {
                "alpha": self.config.alpha,
                "expected_split": list(self.config.expected_split),
                "srm_threshold": self.config.srm_threshold,
                "sequential_tuning": self.config.sequential_tuning,
                "sequential_looks": self.config.sequential_looks,
                "sequential_boundary_level": _boundary_level(self.config),
            },
            "days_observed": self.days_observed,
            "stop_day": self.stop_day,
            "health": self.health_table().to_dict(orient="records"),
            "results": self.results_table().to_dict(orient="records"),
            "guardrails": self.guardrail_table().to_dict(orient="records"),
            "arms": self.arms.to_dict(orient="records"),
            "srm": {**self.srm.__dict__, "status": str(self.srm.status)},
            "power": {**self.power.__dict__, "status": str(self.power.status)},
            "metrics": {
                result.metric: {
                    "lift": result.lift.to_dict(),
                    "cuped": result.cuped.to_dict(),
                    "bayes": {**result.bayes.__dict__, "status": str(result.bayes.status)},
                }
                for result in self.metrics
            },
        }


def json_plan(plan: AnalysisPlan) -> dict[str, Any]:
    """The plan as a JSON object (what its tag holds)."""
    return json.loads(plan.to_json())


def _boundary_level(config: AnalysisConfig) -> float:
    return boundary_level(config)


# -- the plan -----------------------------------------------------------------------------------------------


class PlanOverrideError(ValueError):
    """The primary metric asked for is not the planned one, and the override was not given."""


def effective_plan(
    recorded: str | None, *, primary_metric: str, override_plan: bool, where: str
) -> tuple[AnalysisPlan, str, bool]:
    """The plan to analyse with, a note saying where it came from, and whether its primary metric was overridden.

    ``recorded`` is the router version's plan tag (None when absent: the defaults are used and the note says so);
    ``primary_metric`` "" keeps the plan's. Another primary metric is refused unless ``override_plan``: the metric
    must be chosen before the data, so changing it afterwards is allowed only when asked explicitly, and said.
    """
    if recorded:
        plan = AnalysisPlan.from_json(recorded)
        note = f"analysis plan recorded with {where}"
    else:
        plan = AnalysisPlan()
        note = f"{where} records no analysis plan: the defaults of AnalysisPlan() are used"
    if not primary_metric or primary_metric == plan.primary_metric:
        return plan, note, False
    if not override_plan:
        raise PlanOverrideError(
            f"parameter primary_metric={primary_metric!r} differs from the planned primary metric "
            f"{plan.primary_metric!r} ({note}); the primary metric is fixed before the data: pass "
            "-P override_plan=true to analyse with another one (the readout will say so)"
        )
    secondary = tuple(m for m in (*plan.secondary_metrics, plan.primary_metric) if m != primary_metric)
    overridden = AnalysisPlan(
        primary_metric=primary_metric,
        secondary_metrics=secondary,
        alpha=plan.alpha,
        planned_days=plan.planned_days,
        guardrail_margins=plan.guardrail_margins,
    )
    note += f"; PRIMARY METRIC OVERRIDDEN: {primary_metric!r} instead of the planned {plan.primary_metric!r}"
    return overridden, note, True


def records_config(plan: AnalysisPlan, *, split: float, users: int, days_observed: int) -> AnalysisConfig:
    """The statistics' options for ``plan``: its alpha, the router's split, looks = the planned days.

    The sequential test is tuned to the users expected by the planned end (those seen so far, extrapolated per
    day): a sample size, never an effect, so the choice cannot favour either arm.
    """
    expected_users = max(float(users) * plan.planned_days / max(days_observed, 1), 1.0)
    return AnalysisConfig(
        alpha=plan.alpha,
        expected_split=(1.0 - split, split),
        sequential_tuning=expected_users,
        sequential_looks=plan.planned_days,
    )


# -- the analysis -------------------------------------------------------------------------------------------


def user_totals(user_days: pd.DataFrame, *, through_day: int | None = None) -> pd.DataFrame:
    """Per user: the arm (first seen) and the sums of every count column through ``through_day``."""
    frame = user_days if through_day is None else user_days[user_days["day"] <= through_day]
    sums = [c for c in ("requests", "impressions", "clicks", "score_sum", "cold_impressions") if c in frame]
    return (
        frame.sort_values("day", kind="stable")
        .groupby(USER_ID)
        .agg(policy=("policy", "first"), **{c: (c, "sum") for c in sums})
    )


def metric_statistics(users: pd.DataFrame, covariate: pd.Series, metric: str) -> dict[str, RatioStatistic]:
    """Per arm the sufficient statistics of ``metric``: CTR = clicks / impressions, clicks per user = clicks / 1.

    A per-user mean is a ratio whose denominator is 1 for every user, so the same delta-method and CUPED code
    serves both metrics (and reduces to Welch's z-test for the mean).
    """
    x = covariate.reindex(users.index).fillna(0.0).to_numpy(dtype=np.float64)
    out = {}
    for arm in EXPERIMENT_ARMS:
        mask = (users["policy"] == arm).to_numpy()
        clicks = users.loc[mask, "clicks"].to_numpy(dtype=np.float64)
        denominator = users.loc[mask, "impressions"] if metric == "ctr" else np.ones(clicks.size)
        out[arm] = RatioStatistic.from_units(clicks, denominator, x[mask])
    return out


def _verdict(lift: LiftResult, alpha_significant: bool) -> str:
    if lift.absolute is None:
        return "not computable"
    if alpha_significant and lift.absolute.effect > 0:
        return "B better"
    if alpha_significant and lift.absolute.effect < 0:
        return "A better"
    return "no difference"


def _metric_result(
    users: pd.DataFrame, covariate: pd.Series, metric: str, role: str, config: AnalysisConfig
) -> MetricResult:
    stats_by_arm = metric_statistics(users, covariate, metric)
    lift = ratio_lift(stats_by_arm[CONTROL], stats_by_arm[TREATMENT], config)
    cuped = ratio_lift(stats_by_arm[CONTROL], stats_by_arm[TREATMENT], config, cuped=True)
    # CUPED unless it widened the interval (a noisy theta on few users); the choice never looks at the effect.
    cuped_widened = cuped.absolute is None or cuped.variance_reduction < 0
    used = lift if lift.absolute is not None and cuped_widened else cuped
    p_value = used.absolute.p_value if used.absolute else math.nan
    return MetricResult(
        metric=metric,
        role=role,
        lift=lift,
        cuped=cuped,
        used=used,
        bayes=normal_posterior(used.absolute, credibility=1 - config.alpha),
        adjusted_p_value=p_value,
        verdict=_verdict(used, used.significant),
    )


def _guardrails(
    users: pd.DataFrame, latency_p50_ms: Mapping[str, float], plan: AnalysisPlan, config: AnalysisConfig
) -> tuple[GuardrailResult, ...]:
    results = []
    by_arm = {arm: users[users["policy"] == arm] for arm in EXPERIMENT_ARMS}
    for name, margin in plan.guardrail_margins.items():
        if name == "calibration":
            # |mean score - CTR| per arm; its delta-method variance is that of the signed gap (|.| has slope +-1).
            gaps = {
                arm: ratio_estimate(frame["score_sum"] - frame["clicks"], frame["impressions"])
                for arm, frame in by_arm.items()
            }
            control, treatment = abs(gaps[CONTROL].value), abs(gaps[TREATMENT].value)
            se = math.sqrt(gaps[CONTROL].variance + gaps[TREATMENT].variance)
        elif name == "cold_start_share":
            shares = {
                arm: ratio_estimate(frame["cold_impressions"], frame["impressions"])
                for arm, frame in by_arm.items()
            }
            control, treatment = shares[CONTROL].value, shares[TREATMENT].value
            se = math.sqrt(shares[CONTROL].variance + shares[TREATMENT].variance)
        else:  # latency_ms: the arms' median request latency, aggregated in SQL, so no interval
            control = float(latency_p50_ms.get(CONTROL, math.nan))
            treatment = float(latency_p50_ms.get(TREATMENT, math.nan))
            se = math.nan
        results.append(
            non_inferiority(name, control=control, treatment=treatment, se=se, margin=margin, alpha=config.alpha)
        )
    return tuple(results)


def new_users_by_day(user_days: pd.DataFrame) -> pd.DataFrame:
    """Per (day, arm) the users first seen that day: the per-day SRM's counts (day, arm, users)."""
    first = (
        user_days.sort_values("day", kind="stable")
        .groupby(USER_ID)
        .agg(day=("day", "first"), arm=("policy", "first"))
    )
    return first.groupby(["day", "arm"]).size().rename("users").reset_index()


def read_records(
    location: str,
    *,
    router_name: str,
    router_version: str,
    salt: str,
    start: datetime | None,
    end: datetime | None,
    events: tuple[str, ...],
    workdir: Path,
    spark: Any = None,
) -> ExperimentData:
    """The experiment's records at ``location`` reduced by :mod:`abtest.experiment.ingest`; an open window bound
    (None) becomes the UTC midnight before the router version's first decision / after its last, so day 0 is its
    first day.

    ``spark`` None: DuckDB over a directory, or the database of a SQLAlchemy URL; a SparkSession: the records are
    opened on Spark (:mod:`abtest.experiment.ingest.spark`) and the same reduction runs as Spark SQL.
    """
    # Imported here: the ingest package pulls in DuckDB and SQLAlchemy, which check_params (run by main for
    # every step) does not need.
    from abtest.experiment.ingest.read import open_records
    from abtest.experiment.ingest.reduce import Experiment, decision_span, reduce_experiment

    declared = (*events, CLICK)
    if spark is None:
        store = open_records(location, events=declared, workdir=workdir)
    else:
        from abtest.experiment.ingest.spark import open_spark_records

        store = open_spark_records(location, spark=spark, events=declared, workdir=workdir)
    with store:
        if start is None or end is None:
            span = decision_span(store, router_name=router_name, router_version=router_version, salt=salt or None)
            if span is None:
                raise LookupError(
                    f"{location} holds no decisions of router {router_name} version {router_version}"
                    + (f" with salt {salt!r}" if salt else "")
                    + "; pass the router version the records are from (router_run / router_uri)"
                )
            first, last = span
            start = start or first.floor("D").to_pydatetime()
            end = end or (last.floor("D") + pd.Timedelta(days=1)).to_pydatetime()
            log.info("window [%s, %s) from the records (start / end not given)", start, end)
        experiment = Experiment(
            start=start, end=end, router_version=router_version, salt=salt or None, router_name=router_name
        )
        # Torn tails were reported (logged) by open_records as it read them; they are in data.torn_tails too.
        return reduce_experiment(store, experiment)


def inputs_from_data(data: ExperimentData) -> ReadoutInputs:
    """The readout's inputs from the ingest reduction (:class:`abtest.experiment.ingest.reduce.ExperimentData`)."""
    counts, examples = data.health_counts(), data.health_examples()
    return ReadoutInputs(
        user_days=data.user_days,
        new_users=data.new_users,
        latency_p50_ms=data.latency_p50_ms(),
        health_counts={name: counts[name] for name in HEALTH_CHECKS if name in counts},
        health_examples={name: examples[name] for name in HEALTH_CHECKS if name in examples},
    )


def readout_of_records(
    location: str,
    *,
    router_name: str,
    router_version: str,
    salt: str,
    start: datetime | None,
    end: datetime | None,
    events: tuple[str, ...],
    plan: AnalysisPlan,
    split: float,
    pre_period: pd.Series,
    workdir: Path,
    plan_note: str = "",
    plan_overridden: bool = False,
    spark: Any = None,
) -> RecordsReadout:
    """The records at ``location`` read, reduced and analysed: the one readout path of `analyze` and `simulate`,
    so a simulated experiment and a real one are read out by the same code (``spark``: :func:`read_records`)."""
    data = read_records(
        location,
        router_name=router_name,
        router_version=router_version,
        salt=salt,
        start=start,
        end=end,
        events=events,
        workdir=workdir,
        spark=spark,
    )
    inputs = inputs_from_data(data)
    days_observed = int(inputs.user_days["day"].nunique()) if not inputs.user_days.empty else 0
    config = records_config(
        plan, split=split, users=int(inputs.user_days[USER_ID].nunique()), days_observed=days_observed
    )
    return analyse_records(inputs, plan, config, pre_period, plan_note=plan_note, plan_overridden=plan_overridden)


def health_checks(inputs: ReadoutInputs, srm: SrmResult, config: AnalysisConfig) -> tuple[HealthCheck, ...]:
    """Every check of :data:`HEALTH_CHECKS` as pass/fail with what it saw."""
    checks = [HealthCheck("srm", not srm.flagged, srm.message)]
    daily_flags = []
    new_users = inputs.new_users if not inputs.new_users.empty else new_users_by_day(inputs.user_days)
    counts = new_users.pivot_table(index="day", columns="arm", values="users", aggfunc="sum")
    counts = counts.reindex(columns=list(EXPERIMENT_ARMS)).fillna(0).astype(int)
    for day, row in counts.iterrows():
        result = srm_test([int(row[arm]) for arm in EXPERIMENT_ARMS], config)
        if result.flagged:
            daily_flags.append(f"day {day} (A {row[CONTROL]}, B {row[TREATMENT]}, p = {result.p_value:.2g})")
    checks.append(
        HealthCheck(
            "srm_daily",
            not daily_flags,
            "per-day mismatch on " + "; ".join(daily_flags) if daily_flags else "no day with a mismatch",
        )
    )
    for name in list(HEALTH_CHECKS)[2:]:
        count = int(inputs.health_counts.get(name, 0))
        examples = inputs.health_examples.get(name, "")
        detail = f"{count} found" + (f" (e.g. {examples})" if examples else "") if count else "none found"
        checks.append(HealthCheck(name, count == 0, detail))
    return tuple(checks)


def _daily(
    inputs: ReadoutInputs, covariate: pd.Series, plan: AnalysisPlan, config: AnalysisConfig, days: list[int]
) -> tuple[pd.DataFrame, list[SequentialLook], int | None]:
    rows, looks_input = [], []
    for day in days:
        users = user_totals(inputs.user_days, through_day=day)
        by_metric = {metric: metric_statistics(users, covariate, metric) for metric in plan_metrics(plan)}
        primary = by_metric[plan.primary_metric]
        looks_input.append((primary[CONTROL], primary[TREATMENT]))
        row: dict[str, float] = {"day": day}
        for metric, stats_by_arm in by_metric.items():
            lift = ratio_lift(stats_by_arm[CONTROL], stats_by_arm[TREATMENT], config)
            for arm in EXPERIMENT_ARMS:
                row[f"{metric}_{arm}"] = stats_by_arm[arm].ratio
            row[f"{metric}_lift_abs"] = lift.absolute.effect if lift.absolute else math.nan
            row[f"{metric}_ci_low"] = lift.absolute.ci_low if lift.absolute else math.nan
            row[f"{metric}_ci_high"] = lift.absolute.ci_high if lift.absolute else math.nan
            row[f"{metric}_p_value"] = lift.absolute.p_value if lift.absolute else math.nan
        for arm in EXPERIMENT_ARMS:
            row[f"users_{arm}"] = primary[arm].n
        row["srm_p_value"] = srm_test([primary[CONTROL].n, primary[TREATMENT].n], config).p_value
        rows.append(row)
    looks, first_stop = monitor(looks_input, config)
    daily = pd.DataFrame(rows)
    daily["sequential_p_value"] = [look.p_value for look in looks]
    daily["cs_low"] = [look.ci_low for look in looks]
    daily["cs_high"] = [look.ci_high for look in looks]
    return daily, looks, None if first_stop is None else days[first_stop]


def plan_metrics(plan: AnalysisPlan) -> tuple[str, ...]:
    """The plan's metrics, primary first."""
    return (plan.primary_metric, *plan.secondary_metrics)


def _arms_table(users: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for arm in EXPERIMENT_ARMS:
        frame = users[users["policy"] == arm]
        impressions = float(frame["impressions"].sum())
        clicks = float(frame["clicks"].sum())
        rows.append(
            {
                "arm": arm,
                "users": len(frame),
                "requests": float(frame["requests"].sum()),
                "impressions": impressions,
                "clicks": clicks,
                "ctr": clicks / impressions if impressions else math.nan,
                "clicks_per_user": clicks / len(frame) if len(frame) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _decide(
    primary: MetricResult, *, plan: AnalysisPlan, days_observed: int, stop_day: int | None
) -> tuple[str, str]:
    """The winner and the verdict part of the sentence, from the primary metric only.

    At or after the planned end the fixed-horizon interval decides; before it, peeking at that interval would
    inflate the error rate, so only the always-valid sequential test can end the experiment early.
    """
    used = primary.used
    if used.absolute is None:
        return NO_WINNER, f"No decision possible: {used.message}"
    estimate = used.absolute
    label = METRIC_LABELS[primary.metric]
    relative = f" ({used.relative.effect:+.1%} relative)" if used.relative is not None else ""
    evidence = (
        f"{label} lift B - A = {estimate.effect:+.4g}{relative}, {1 - plan.alpha:.0%} CI "
        f"[{estimate.ci_low:+.4g}, {estimate.ci_high:+.4g}], p = {estimate.p_value:.3g}, "
        f"P(B better) = {primary.bayes.probability_b_better:.1%} ({primary.method})"
    )
    if days_observed >= plan.planned_days:
        significant = used.significant
        basis = f"at the planned end ({days_observed} of {plan.planned_days} days)"
    else:
        significant = stop_day is not None
        basis = f"interim look, day {days_observed} of {plan.planned_days}: the always-valid sequential test " + (
            f"crossed its boundary on day {stop_day}" if significant else "has not crossed its boundary"
        )
    if significant and estimate.effect > 0:
        return TREATMENT, f"Ship policy B: it raises {label} {basis}: {evidence}"
    if significant and estimate.effect < 0:
        return CONTROL, f"Keep policy A: policy B lowers {label} {basis}: {evidence}"
    return NO_WINNER, f"No significant difference between the policies {basis}: {evidence}"


def analyse_records(
    inputs: ReadoutInputs,
    plan: AnalysisPlan,
    config: AnalysisConfig,
    pre_period: pd.Series,
    *,
    plan_note: str = "",
    plan_overridden: bool = False,
) -> RecordsReadout:
    """The readout of one experiment from its records' reduction (see the module docstring)."""
    user_days = inputs.user_days
    if user_days.empty:
        raise ValueError("the experiment has no (day, user) rows in the window: nothing to analyse")
    days = list(range(int(user_days["day"].min()), int(user_days["day"].max()) + 1))
    users = user_totals(user_days)
    srm = srm_test([int((users["policy"] == arm).sum()) for arm in EXPERIMENT_ARMS], config)
    health = health_checks(inputs, srm, config)
    metrics = [_metric_result(users, pre_period, plan.primary_metric, "primary", config)]
    secondary = [_metric_result(users, pre_period, m, "secondary", config) for m in plan.secondary_metrics]
    adjusted = holm(
        {r.metric: r.used.absolute.p_value if r.used.absolute else math.nan for r in secondary}, alpha=config.alpha
    )
    for result in secondary:
        holm_result = adjusted[result.metric]
        metrics.append(
            MetricResult(
                **{
                    **result.__dict__,
                    "adjusted_p_value": holm_result.adjusted_p_value,
                    "verdict": _verdict(result.used, holm_result.significant),
                }
            )
        )
    daily, looks, stop_day = _daily(inputs, pre_period, plan, config, days)
    guardrails = _guardrails(users, inputs.latency_p50_ms, plan, config)
    pooled = metric_statistics(users, pre_period, plan.primary_metric)
    planned_users = config.sequential_tuning
    share_b = config.expected_split[1]
    power = power_analysis(
        pooled[CONTROL] + pooled[TREATMENT],
        users_control=round(planned_users * (1 - share_b)),
        users_treatment=round(planned_users * share_b),
        config=config,
    )
    winner, verdict = _decide(metrics[0], plan=plan, days_observed=len(days), stop_day=stop_day)
    failures = [check.name for check in health if not check.passed]
    broken = [g.message for g in guardrails if not g.held]
    decision = verdict + "."
    if broken:
        decision += " Guardrails not held: " + "; ".join(broken) + "."
    if plan_overridden:
        decision += f" The primary metric was changed after the plan ({plan_note})."
    if failures:
        decision = f"{UNTRUSTED}: health checks failed ({', '.join(failures)}). The numbers said: {decision}"
    return RecordsReadout(
        plan=plan,
        plan_note=plan_note,
        plan_overridden=plan_overridden,
        config=config,
        health=health,
        metrics=tuple(metrics),
        guardrails=guardrails,
        arms=_arms_table(users),
        daily=daily,
        srm=srm,
        power=power,
        sequential=tuple(looks),
        stop_day=stop_day,
        days_observed=len(days),
        winner=winner,
        decision=decision,
    )
