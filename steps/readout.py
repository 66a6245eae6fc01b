"""The experiment readout: from per-(day, user) traffic to the numbers, the decision and the HTML report.

:func:`analyse` turns :func:`steps.traffic.user_day_table` into an :class:`ExperimentReadout` with the engine in
:mod:`steps.abstats`: per day (cumulative) the lift with its fixed-horizon interval, the confidence sequence and
the always-valid p-value; at the end the SRM check, the lift with and without CUPED, power and MDE, guardrails and
(synthetic environment) the truth. :func:`write_readout` writes the HTML report and the tables (CSV / JSON).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

from ab_router.schema import USER_ID
from steps.abstats import (
    AnalysisConfig,
    LiftResult,
    PowerResult,
    RatioStatistic,
    SequentialLook,
    SrmResult,
    Status,
    monitor,
    power_analysis,
    ratio_lift,
    srm_test,
)
from steps.traffic import ARMS

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
        for arm in ARMS
    }


def guardrail_table(impressions: pd.DataFrame, *, environment: str = "synthetic") -> pd.DataFrame:
    """Per arm: calibration of the served scores against the clicks, and the share of cold-start look-ups.

    In ``replay`` an unseen item is a click of 0 by construction, not an observed outcome, so calibration there is
    measured on the logged impressions only (where the click is the user's real label).
    """
    rows = []
    for arm in ARMS:
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
    looks, first_stop = monitor([(s["A"], s["B"]) for s in daily_stats], config)
    rows = []
    for day, (stats_by_arm, look) in enumerate(zip(daily_stats, looks, strict=True), start=1):
        lift = ratio_lift(stats_by_arm["A"], stats_by_arm["B"], config)
        srm = srm_test([stats_by_arm["A"].n, stats_by_arm["B"].n], config)
        absolute = lift.absolute
        rows.append(
            {
                "day": day,
                "users_A": stats_by_arm["A"].n,
                "users_B": stats_by_arm["B"].n,
                "ctr_A": stats_by_arm["A"].ratio,
                "ctr_B": stats_by_arm["B"].ratio,
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
    control, treatment = final["A"], final["B"]
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
        true_abs = truth["B"] - truth["A"]
        truth_summary = {"ctr_A": truth["A"], "ctr_B": truth["B"], "lift_abs": true_abs}
        truth_summary["lift_rel"] = truth["B"] / truth["A"] - 1 if truth["A"] > 0 else float("nan")
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


def decision_lift(readout: ExperimentReadout) -> LiftResult:
    """The analysis the decision rests on: CUPED, unless it made the lift's variance larger (or gave no estimate).

    CUPED's theta is estimated from the same few users it adjusts; with small arms or a covariate unrelated to
    clicks that estimate can be noisy enough to widen the interval instead of narrowing it. The choice looks
    only at the variances, never at the effect, so it does not favour either arm.
    """
    cuped, unadjusted = readout.cuped, readout.lift
    if unadjusted.absolute is not None and (cuped.absolute is None or cuped.variance_reduction < 0):
        return unadjusted
    return cuped


def variance_change_text(variance_reduction: float) -> str:
    """CUPED's effect on the lift's variance as a signed share: reduction 0.12 -> "-12%", -0.95 -> "+95%"."""
    change = -variance_reduction
    return "+0%" if round(abs(change), 2) == 0 else f"{change:+.0%}"


def decision_sentence(readout: ExperimentReadout) -> str:
    """One sentence a product owner can act on, with the evidence that decides it."""
    if readout.srm.flagged:
        return (
            f"Do not decide: sample ratio mismatch (users A {readout.srm.observed[0]}, "
            f"B {readout.srm.observed[1]}, p = {readout.srm.p_value:.2g} < {readout.config.srm_threshold:g}); "
            "fix assignment or logging and rerun."
        )
    result = decision_lift(readout)
    if result.absolute is None:
        return f"No decision possible: {result.message}."
    estimate = result.absolute
    level = f"{1 - readout.config.alpha:.0%}"
    relative = f" ({result.relative.effect:+.1%} relative)" if result.relative is not None else ""
    change = variance_change_text(readout.cuped.variance_reduction)
    if result is readout.cuped:
        method = f"CUPED, variance {change}"
    elif readout.cuped.absolute is None:
        method = f"unadjusted delta method: CUPED gave no estimate, {readout.cuped.message}"
    else:
        method = f"unadjusted delta method: CUPED would have increased the variance by {change[1:]}, so not used"
    evidence = (
        f"CTR lift B - A = {estimate.effect:+.4f}{relative}, {level} CI [{estimate.ci_low:+.4f}, "
        f"{estimate.ci_high:+.4f}], p = {estimate.p_value:.3g} ({method})"
    )
    stop = (
        f"; the sequential test could have stopped on day {readout.stop_day}"
        if readout.stop_day is not None
        else "; the sequential test never crossed its boundary"
    )
    caveat = f" Guardrails: {'; '.join(readout.warnings)}." if readout.warnings else ""
    if estimate.ci_low > 0:
        verdict = "Ship policy B: it raises CTR"
    elif estimate.ci_high < 0:
        verdict = "Keep policy A: policy B lowers CTR"
    else:
        mde = readout.power.mde_absolute
        verdict = "No significant difference between the policies" + (
            f" (the test could detect a lift of ±{mde:.4f} with {readout.config.power:.0%} power)"
            if np.isfinite(mde)
            else ""
        )
    return f"{verdict}: {evidence}{stop}.{caveat}"


# -- report -------------------------------------------------------------------------------------------------


def _figure_html(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">'


def readout_figures(readout: ExperimentReadout) -> dict[str, Any]:
    """The four panels: cumulative lift with CI band, per-arm CTR bars, sequential p-value, SRM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily = readout.daily
    figures = {}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.fill_between(
        daily["day"],
        daily["cs_low"].clip(-1, 1),
        daily["cs_high"].clip(-1, 1),
        alpha=0.2,
        label="confidence sequence (always valid)",
    )
    ax.fill_between(daily["day"], daily["ci_low"], daily["ci_high"], alpha=0.35, label="fixed-horizon 95% CI")
    ax.plot(daily["day"], daily["lift_abs"], marker="o", label="observed lift B - A")
    if "lift_abs" in readout.truth:
        ax.axhline(readout.truth["lift_abs"], color="green", linestyle="--", label="true lift")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel="day", ylabel="CTR lift (absolute)", title="Cumulative lift of B over A")
    ax.legend(fontsize=8)
    figures["lift"] = fig

    fig, ax = plt.subplots(figsize=(5, 3.6))
    arms = readout.arms
    ax.bar(arms["arm"], arms["ctr"], yerr=1.96 * arms["ctr_se"], capsize=6, color=["#4C72B0", "#DD8452"])
    if "true_ctr" in arms:
        ax.scatter(arms["arm"], arms["true_ctr"], color="green", zorder=3, marker="D", label="true CTR")
        ax.legend(fontsize=8)
    ax.set(ylabel="CTR (clicks / impressions)", title="CTR per arm (95% CI)")
    figures["arms"] = fig

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(daily["day"], daily["sequential_p_value"], marker="o", label="always-valid p-value")
    ax.plot(
        daily["day"], daily["p_value"], marker=".", linestyle=":", label="fixed-horizon p (not valid if peeked)"
    )
    ax.axhline(readout.config.alpha, color="red", linestyle="--", label=f"alpha = {readout.config.alpha}")
    ax.set(yscale="log", xlabel="day", ylabel="p-value", title="Sequential monitoring")
    ax.legend(fontsize=8)
    figures["sequential"] = fig

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(["A", "B"], readout.srm.observed, color=["#4C72B0", "#DD8452"], label="observed users")
    ax.scatter(["A", "B"], readout.srm.expected, color="black", marker="_", s=600, label="expected by split")
    ax.set(
        ylabel="users", title=f"SRM: p = {readout.srm.p_value:.3g}" + (" FLAGGED" if readout.srm.flagged else "")
    )
    ax.legend(fontsize=8)
    figures["srm"] = fig
    return figures


def render_html(readout: ExperimentReadout, *, title: str = "A/B experiment readout") -> str:
    """A self-contained HTML page (figures embedded) with the decision first."""
    import matplotlib.pyplot as plt

    figures = readout_figures(readout)
    images = {name: _figure_html(fig) for name, fig in figures.items()}
    for fig in figures.values():
        plt.close(fig)
    summary = pd.DataFrame(
        [
            {
                "analysis": name,
                "status": str(r.status),
                **(
                    {
                        "lift_abs": r.absolute.effect,
                        "ci_low": r.absolute.ci_low,
                        "ci_high": r.absolute.ci_high,
                        "p_value": r.absolute.p_value,
                        "lift_rel": r.relative.effect if r.relative else np.nan,
                        "rel_ci_low": r.relative.ci_low if r.relative else np.nan,
                        "rel_ci_high": r.relative.ci_high if r.relative else np.nan,
                    }
                    if r.absolute
                    else {}
                ),
                "variance_reduction": r.variance_reduction,
            }
            for name, r in (("delta method", readout.lift), ("delta method + CUPED", readout.cuped))
        ]
    )
    power = readout.power
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>Environment:</b> {html.escape(readout.environment)}</p>",
        f"<h2>Decision</h2><p>{html.escape(readout.decision)}</p>",
        "<h2>Lift of B over A</h2>",
        images["lift"],
        summary.to_html(index=False, float_format="%.5g"),
        "<h2>Arms</h2>",
        images["arms"],
        readout.arms.to_html(index=False, float_format="%.5g"),
        "<h2>Sequential monitoring</h2>",
        images["sequential"],
        f"<p>First day the test could have stopped: {readout.stop_day or 'never'}.</p>",
        "<h2>Sample ratio mismatch</h2>",
        images["srm"],
        f"<p>{html.escape(readout.srm.message)}</p>",
        "<h2>Power</h2>",
        f"<p>With {power.users_control} + {power.users_treatment} users and alpha {readout.config.alpha}, the "
        f"minimum detectable lift at {power.power:.0%} power is {power.mde_absolute:.4g} absolute "
        f"({power.mde_relative:.1%} of the {power.baseline_ratio:.4g} baseline CTR) without CUPED.</p>",
        "<h2>Guardrails</h2>",
        readout.guardrails.to_html(index=False, float_format="%.4g"),
        "".join(f"<p>⚠ {html.escape(w)}</p>" for w in readout.warnings),
    ]
    if readout.truth:
        sections += [
            "<h2>Truth (synthetic environment)</h2>",
            pd.DataFrame([readout.truth]).to_html(index=False, float_format="%.5g"),
        ]
    sections += ["<h2>Per day (cumulative)</h2>", readout.daily.to_html(index=False, float_format="%.4g")]
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:auto} table{border-collapse:collapse;font-size:12px}"
    )
    return (
        f"<html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )


def write_readout(readout: ExperimentReadout, directory: Path) -> list[Path]:
    """readout.html, readout.json, daily.csv, arms.csv, guardrails.csv in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "readout.html": render_html(readout),
        "readout.json": json.dumps(readout.to_dict(), indent=2, default=_json_default),
    }
    for name, text in paths.items():
        (directory / name).write_text(text)
    readout.daily.to_csv(directory / "daily.csv", index=False)
    readout.arms.to_csv(directory / "arms.csv", index=False)
    readout.guardrails.to_csv(directory / "guardrails.csv", index=False)
    return [directory / n for n in (*paths, "daily.csv", "arms.csv", "guardrails.csv")]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Status):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
