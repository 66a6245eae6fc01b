"""Figures of the A/B evaluation, A and B always on the same axes.

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot: no GUI backend, no global figure
registry to leak memory in a long run; each function returns its figure for the report and ``mlflow.log_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT
from abtest.evaluation.metrics import higher_is_better

DIFFERENCE = f"{TREATMENT} − {CONTROL}"  # the paired difference, treatment minus control
POLICY_COLORS: dict[str, str] = dict(zip(EXPERIMENT_ARMS, ("tab:blue", "tab:orange"), strict=True))
CALIBRATION_BINS = 10


def _curve_figure(display, labels: np.ndarray, scores: Mapping[str, np.ndarray], *, title: str) -> Figure:
    """A and B on one sklearn curve display (ROC or precision-recall), chance level drawn once."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for index, (policy, values) in enumerate(scores.items()):
        display.from_predictions(
            labels,
            values,
            name=f"policy {policy}",
            ax=ax,
            curve_kwargs={"color": POLICY_COLORS.get(policy)},
            plot_chance_level=index == len(scores) - 1,
        )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roc_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """ROC curves of A and B with their AUCs, and the chance diagonal."""
    return _curve_figure(RocCurveDisplay, labels, scores, title="ROC curve (test rows)")


def precision_recall_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Precision-recall curves of A and B with their average precision, and the positive rate as chance."""
    return _curve_figure(PrecisionRecallDisplay, labels, scores, title="Precision-recall curve (test rows)")


def calibration_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Reliability diagram (observed positive rate per score bin) over a histogram of the bin counts."""
    fig = Figure(figsize=(5.5, 6.5))
    curve_ax, count_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    bins = np.linspace(0, 1, CALIBRATION_BINS + 1)
    for policy, values in scores.items():
        CalibrationDisplay.from_predictions(
            labels,
            values,
            n_bins=CALIBRATION_BINS,
            name=f"policy {policy}",
            ax=curve_ax,
            color=POLICY_COLORS.get(policy),
        )
        count_ax.hist(
            values,
            bins=bins,
            histtype="step",
            linewidth=1.5,
            color=POLICY_COLORS.get(policy),
            label=f"policy {policy}",
        )
    curve_ax.set_title(f"Calibration ({CALIBRATION_BINS} equal-width bins)")
    curve_ax.set_xlabel("")
    count_ax.set_xlabel("predicted probability of a positive")
    count_ax.set_ylabel("rows per bin")
    count_ax.legend(loc="upper center", fontsize="small")
    fig.tight_layout()
    return fig


def gain_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gain: share of rows targeted (highest scores first) vs share of positives captured."""
    order = np.argsort(-scores, kind="stable")
    captured = np.cumsum(labels[order]) / max(labels.sum(), 1)
    targeted = np.arange(1, len(labels) + 1) / len(labels)
    return np.concatenate([[0.0], targeted]), np.concatenate([[0.0], captured])


def lift_gain_figure(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> Figure:
    """Cumulative gain and lift (gain / share targeted) of A and B; the random policy has lift 1."""
    fig = Figure(figsize=(11, 4.5))
    gain_ax, lift_ax = fig.subplots(1, 2)
    for policy, values in scores.items():
        targeted, captured = gain_curve(np.asarray(labels), np.asarray(values))
        color = POLICY_COLORS.get(policy)
        gain_ax.plot(targeted, captured, label=f"policy {policy}", color=color)
        start = max(1, len(targeted) // 100)  # the first percent of rows makes lift jumpy
        lift_ax.plot(targeted[start:], captured[start:] / targeted[start:], label=f"policy {policy}", color=color)
    gain_ax.plot([0, 1], [0, 1], "k--", label="random")
    lift_ax.axhline(1.0, color="k", linestyle="--", label="random")
    gain_ax.set(title="Cumulative gain", xlabel="share of rows targeted (by score)", ylabel="share of positives")
    lift_ax.set(title="Lift", xlabel="share of rows targeted (by score)", ylabel="lift over random")
    gain_ax.legend()
    lift_ax.legend()
    fig.tight_layout()
    return fig


def metrics_figure(comparison: pd.DataFrame) -> Figure:
    """Left: A and B per metric with interval error bars. Right: B − A per metric with its interval."""
    metrics = comparison["metric"].tolist()
    fig = Figure(figsize=(12, 0.5 * len(metrics) + 2.5))
    bar_ax, diff_ax = fig.subplots(1, 2)
    y = np.arange(len(metrics))
    height = 0.38
    for offset, policy in ((-height / 2, "a"), (height / 2, "b")):
        values = comparison[policy].to_numpy(dtype=float)
        # Clipped at 0: a set statistic such as coverage can sit outside its own percentile interval.
        errors = np.clip(
            np.vstack([values - comparison[f"{policy}_low"], comparison[f"{policy}_high"] - values]).astype(float),
            0.0,
            None,
        )
        bar_ax.barh(
            y + offset,
            values,
            height,
            xerr=errors,
            capsize=3,
            label=f"policy {policy.upper()}",
            color=POLICY_COLORS[policy.upper()],
        )
    bar_ax.set_yticks(y, metrics)
    bar_ax.invert_yaxis()
    bar_ax.set_title("Metrics with 95% user-clustered bootstrap intervals")
    bar_ax.legend()
    diff = comparison["diff"].to_numpy(dtype=float)
    errors = np.clip(
        np.vstack([diff - comparison["diff_low"], comparison["diff_high"] - diff]).astype(float), 0, None
    )
    colors = [
        "tab:green"
        if (row.diff_low > 0 if higher_is_better(row.metric) else row.diff_high < 0)
        else "tab:red"
        if (row.diff_high < 0 if higher_is_better(row.metric) else row.diff_low > 0)
        else "tab:gray"
        for row in comparison.itertuples()
    ]
    for position, (value, low_error, high_error, color) in enumerate(zip(diff, *errors, colors, strict=True)):
        diff_ax.errorbar(value, position, xerr=[[low_error], [high_error]], fmt="o", color=color, capsize=4)
    diff_ax.axvline(0, color="k", linewidth=0.8)
    diff_ax.set_yticks(y, metrics)
    diff_ax.invert_yaxis()
    diff_ax.set_title("B − A (green: B better, red: A better, gray: covers 0)")
    fig.tight_layout()
    return fig


def segment_heatmap(segments: pd.DataFrame) -> Figure:
    """Heatmap of B's improvement over A per segment and metric (sign flipped for lower-is-better metrics).

    Cells whose interval excludes 0 are marked with *; empty cells are segments too small to measure; rows of
    segments with too few users for an interval show the point difference and say so in their label.
    """
    frame = segments.copy()
    sign = np.where(frame["metric"].map(higher_is_better), 1.0, -1.0)
    frame["improvement"] = sign * frame["diff"]
    frame["significant"] = (frame["diff_low"] > 0) | (frame["diff_high"] < 0)
    few_users = frame.get("note", pd.Series("", index=frame.index)).fillna("").str.startswith("too few users")
    size = "n=" + frame["n_rows"].astype(str)
    size = size.where(~few_users, size + ", " + frame["n_users"].astype(str) + " users: too few, point only")
    frame["row"] = frame["family"] + ": " + frame["segment"] + " (" + size + ")"
    order = list(dict.fromkeys(frame["row"]))
    metric_order = list(dict.fromkeys(frame["metric"]))
    values = frame.pivot(index="row", columns="metric", values="improvement").loc[order, metric_order]
    marks = frame.pivot(index="row", columns="metric", values="significant").loc[order, metric_order]
    labels = values.map(lambda v: "" if pd.isna(v) else f"{v:+.3f}") + marks.map(
        lambda s: "*" if s is True else ""
    )
    fig = Figure(figsize=(2.0 * len(metric_order) + 4, 0.32 * len(order) + 1.8))
    ax = fig.subplots()
    limit = float(np.nanmax(np.abs(values.to_numpy()))) if values.notna().any().any() else 1.0
    sns.heatmap(
        values.astype(float),
        annot=labels,
        fmt="",
        cmap="RdBu",
        center=0,
        vmin=-limit,
        vmax=limit,
        cbar_kws={"label": "B better →"},
        ax=ax,
        linewidths=0.5,
        annot_kws={"fontsize": 8},
    )
    ax.set_title("B − A per segment (positive = B better; * = 95% interval excludes 0)")
    ax.set_xlabel("")
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def cross_validation_figure(per_fold: pd.DataFrame) -> Figure:
    """Box plots per metric: A and B per fold, and the paired difference B − A per fold."""
    metrics = list(dict.fromkeys(per_fold["metric"]))
    wide = per_fold.pivot_table(index=["metric", "fold"], columns="policy", values="value").reset_index()
    wide[DIFFERENCE] = wide[TREATMENT] - wide[CONTROL]
    fig = Figure(figsize=(2.4 * len(metrics) + 1, 6.5))
    axes = fig.subplots(2, len(metrics), squeeze=False)
    for column, metric in enumerate(metrics):
        per_metric = per_fold[per_fold["metric"] == metric]
        top, bottom = axes[0, column], axes[1, column]
        sns.boxplot(
            data=per_metric, x="policy", y="value", hue="policy", palette=POLICY_COLORS, ax=top, legend=False
        )
        sns.stripplot(data=per_metric, x="policy", y="value", color="k", size=4, ax=top)
        top.set(title=metric, xlabel="", ylabel="per fold" if column == 0 else "")
        differences = wide.loc[wide["metric"] == metric, DIFFERENCE]
        sns.boxplot(y=differences, ax=bottom, color="tab:gray")
        sns.stripplot(y=differences, ax=bottom, color="k", size=4)
        bottom.axhline(0, color="k", linewidth=0.8)
        bottom.set(xlabel=DIFFERENCE, ylabel="paired difference" if column == 0 else "")
    fig.suptitle("Cross-validation: both policies refit per fold")
    fig.tight_layout()
    return fig
