"""The experiment readout's statistics: from per-(day, user) traffic to the numbers the decision rests on.

:func:`analyse` turns :func:`abtest.experiment.traffic.user_day_table` into an :class:`ExperimentReadout` with the
engine in :mod:`abtest.experiment.stats`: per day (cumulative) the lift with its fixed-horizon interval, the
confidence sequence and the always-valid p-value; at the end the SRM check, the lift with and without CUPED, power
and MDE, guardrails and (synthetic environment) the truth. The decision sentence is :mod:`.decision`; the files are
:mod:`.report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from ab_router.schema import USER_ID
from abtest.experiment.readout.decision import decision_lift, decision_sentence
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

# Guardrail limits: a served score whose mean is off the observed CTR by more than this factor, or an arm whose
# impressions come from cold-start look-ups more often than this share, is called out in the decision.
CALIBRATION_LIMITS: tuple[float, float] = (0.5, 2.0)
COLD_SHARE_LIMIT = 0.2


@dataclass(frozen=True)
class ExperimentReadout:
    """Everything the report shows. Control is arm A, treatment arm B."""

    environment: str
    config: AnalysisConfig
    daily: pd.DataFrame  # one row per day, cumulative
    arms: pd.DataFrame  # one row per arm: users, requests, impressions, clicks, ctr (+ true_ctr)
    lift: LiftResult
    cuped: LiftResult
    srm: SrmResult
    power: PowerResult
    sequential: list[SequentialLook]
    stop_day: int | None
    guardrails: pd.DataFrame
    truth: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    decision: str = ""

    def headline(self) -> dict[str, float]:
        """The numbers logged as run metrics (NaN-free: undefined values are left out)."""
        values: dict[str, float] = {
            "srm_p_value": self.srm.p_value,
            "srm_flagged": float(self.srm.flagged),
            "cuped_variance_reduction": self.cuped.variance_reduction,
            "stop_day": float(self.stop_day) if self.stop_day is not None else float("nan"),
            "sequential_stopped": float(self.stop_day is not None),
            "mde_absolute": self.power.mde_absolute,
            "mde_relative": self.power.mde_relative,
        }
        for arm, row in self.arms.set_index("arm").iterrows():
            for column in ("users", "requests", "impressions", "clicks", "ctr"):
                values[f"{column}_{arm}"] = float(row[column])
        for prefix, result in (("lift", self.lift), ("cuped_lift", self.cuped)):
            for kind, estimate in (("abs", result.absolute), ("rel", result.relative)):
                if estimate is not None:
                    values[f"{prefix}_{kind}"] = estimate.effect
                    values[f"{prefix}_{kind}_ci_low"] = estimate.ci_low
                    values[f"{prefix}_{kind}_ci_high"] = estimate.ci_high
                    values[f"{prefix}_{kind}_p_value"] = estimate.p_value
        if self.sequential:
            values["sequential_p_value"] = self.sequential[-1].p_value
        for arm, row in self.guardrails.set_index("arm").iterrows():
            values[f"calibration_ratio_{arm}"] = float(row["calibration_ratio"])
            values[f"cold_share_{arm}"] = float(row["cold_share"])
        values.update({f"true_{key}": value for key, value in self.truth.items()})
        return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the per-day and per-arm tables go to CSV)."""
        return {
            "environment": self.environment,
            "config": {
                "alpha": self.config.alpha,
                "expected_split": list(self.config.expected_split),
                "srm_threshold": self.config.srm_threshold,
                "power": self.config.power,
                "sequential_tuning": self.config.sequential_tuning,
            },
            "decision": self.decision,
            "decision_analysis": "cuped" if decision_lift(self) is self.cuped else "unadjusted",
            "warnings": list(self.warnings),
            "lift": self.lift.to_dict(),
            "cuped_lift": self.cuped.to_dict(),
            "srm": {**self.srm.__dict__, "status": str(self.srm.status)},
            "power": {**self.power.__dict__, "status": str(self.power.status)},
            "stop_day": self.stop_day,
            "truth": self.truth,
            "arms": self.arms.to_dict(orient="records"),
            "guardrails": self.guardrails.to_dict(orient="records"),
        }


def arm_statistics(
    user_days: pd.DataFrame, covariate: pd.Series, *, through_day: int
) -> dict[str, RatioStatistic]:
    """Per arm, the users' cumulative clicks / impressions through ``through_day``, with the CUPED covariate."""
    users = (
        user_days[user_days["day"] <= through_day]
        .groupby(USER_ID)
        .agg(policy=("policy", "first"), clicks=("clicks", "sum"), impressions=("impressions", "sum"))
    )
    x = covariate.reindex(users.index).fillna(0.0).to_numpy()
    return {
        arm: RatioStatistic.from_units(
            users.loc[users["policy"] == arm, "clicks"],
            users.loc[users["policy"] == arm, "impressions"],
            x[(users["policy"] == arm).to_numpy()],
        )
        for arm in EXPERIMENT_ARMS
    }


def guardrail_table(impressions: pd.DataFrame, *, environment: str) -> pd.DataFrame:
    """Per arm: calibration of the served scores against the clicks, and the share of cold-start look-ups.

    In ``replay`` an unseen item is a click of 0 by construction, not an observed outcome, so calibration there is
    measured on the logged impressions only (where the click is the user's real label).
    """
    rows = []
    for arm in EXPERIMENT_ARMS:
        shown = impressions[impressions["policy"] == arm]
        judged = shown[shown["logged"]] if environment == "replay" and "logged" in shown else shown
        if shown.empty or judged.empty:
            rows.append({"arm": arm, "mean_score": np.nan, "ctr": np.nan, "calibration_ratio": np.nan})
            continue
        ctr = float(judged["click"].mean())
        rows.append(
            {
                "arm": arm,
                "calibration_impressions": len(judged),
                "mean_score": float(judged["score"].mean()),
                "ctr": ctr,
                "calibration_ratio": float(judged["score"].mean() / ctr) if ctr > 0 else np.nan,
                "brier": float(brier_score_loss(judged["click"], judged["score"].clip(0, 1))),
                "cold_user_share": float(shown["cold_user"].mean()),
                "cold_item_share": float(shown["cold_item"].mean()),
                "cold_share": float((shown["cold_user"] | shown["cold_item"]).mean()),
            }
        )
    return pd.DataFrame(rows)


def _guardrail_warnings(guardrails: pd.DataFrame) -> list[str]:
    warnings = []
    low, high = CALIBRATION_LIMITS
    for row in guardrails.itertuples(index=False):
        if not np.isfinite(row.calibration_ratio) or not low <= row.calibration_ratio <= high:
            warnings.append(
                f"policy {row.arm}'s scores are miscalibrated: mean score / CTR = {row.calibration_ratio:.2f}"
                f" (allowed {low}-{high})"
            )
        if getattr(row, "cold_share", 0.0) > COLD_SHARE_LIMIT:
            warnings.append(
                f"policy {row.arm}: {row.cold_share:.0%} of impressions used cold-start look-ups "
                f"(limit {COLD_SHARE_LIMIT:.0%})"
            )
    return warnings


def analyse(
    user_days: pd.DataFrame,
    covariate: pd.Series,
    *,
    config: AnalysisConfig,
    days: int,
    environment: str,
    guardrails: pd.DataFrame | None = None,
    truth: Mapping[str, float] | None = None,
) -> ExperimentReadout:
    """The full readout of one experiment (see the module docstring)."""
    daily_stats = [arm_statistics(user_days, covariate, through_day=day) for day in range(1, days + 1)]
    looks, first_stop = monitor([(s[CONTROL], s[TREATMENT]) for s in daily_stats], config)
    rows = []
    for day, (stats_by_arm, look) in enumerate(zip(daily_stats, looks, strict=True), start=1):
        lift = ratio_lift(stats_by_arm[CONTROL], stats_by_arm[TREATMENT], config)
        srm = srm_test([stats_by_arm[CONTROL].n, stats_by_arm[TREATMENT].n], config)
        absolute = lift.absolute
        rows.append(
            {
                "day": day,
                f"users_{CONTROL}": stats_by_arm[CONTROL].n,
                f"users_{TREATMENT}": stats_by_arm[TREATMENT].n,
                f"ctr_{CONTROL}": stats_by_arm[CONTROL].ratio,
                f"ctr_{TREATMENT}": stats_by_arm[TREATMENT].ratio,
                "status": str(lift.status),
                "lift_abs": absolute.effect if absolute else np.nan,
                "ci_low": absolute.ci_low if absolute else np.nan,
                "ci_high": absolute.ci_high if absolute else np.nan,
                "p_value": absolute.p_value if absolute else np.nan,
                "cs_low": look.ci_low,
                "cs_high": look.ci_high,
                "sequential_p_value": look.p_value,
                "srm_p_value": srm.p_value,
            }
        )
    final = daily_stats[-1]
    control, treatment = final[CONTROL], final[TREATMENT]
    lift = ratio_lift(control, treatment, config)
    cuped = ratio_lift(control, treatment, config, cuped=True)
    srm = srm_test([control.n, treatment.n], config)
    total_users = control.n + treatment.n
    share_b = config.expected_split[1]
    power = power_analysis(
        control + treatment,
        users_control=round(total_users * (1 - share_b)),
        users_treatment=round(total_users * share_b),
        config=config,
    )
    arms = pd.DataFrame(
        [
            {
                "arm": arm,
                "users": stat.n,
                "requests": int(user_days.loc[user_days["policy"] == arm, "requests"].sum()),
                "impressions": stat.d_sum,
                "clicks": stat.m_sum,
                "ctr": stat.ratio,
                "ctr_se": math.sqrt(stat.linearized_variance / stat.n)
                if stat.n >= 2 and stat.d_sum > 0
                else np.nan,
                **({"true_ctr": truth[arm]} if truth else {}),
            }
            for arm, stat in final.items()
        ]
    )
    truth_summary: dict[str, float] = {}
    if truth:
        true_abs = truth[TREATMENT] - truth[CONTROL]
        truth_summary = {
            f"ctr_{CONTROL}": truth[CONTROL],
            f"ctr_{TREATMENT}": truth[TREATMENT],
            "lift_abs": true_abs,
        }
        truth_summary["lift_rel"] = truth[TREATMENT] / truth[CONTROL] - 1 if truth[CONTROL] > 0 else float("nan")
        if cuped.absolute is not None:
            truth_summary["covered_by_cuped_ci"] = float(
                cuped.absolute.ci_low <= true_abs <= cuped.absolute.ci_high
            )
    guardrails = guardrails if guardrails is not None else pd.DataFrame(columns=["arm", "calibration_ratio"])
    warnings = _guardrail_warnings(guardrails)
    readout = ExperimentReadout(
        environment=environment,
        config=config,
        daily=pd.DataFrame(rows),
        arms=arms,
        lift=lift,
        cuped=cuped,
        srm=srm,
        power=power,
        sequential=looks,
        stop_day=None if first_stop is None else first_stop + 1,
        guardrails=guardrails,
        truth=truth_summary,
        warnings=tuple(warnings),
    )
    return ExperimentReadout(**{**readout.__dict__, "decision": decision_sentence(readout)})


# -- report -------------------------------------------------------------------------------------------------
