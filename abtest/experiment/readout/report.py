"""The experiment readout as files: the HTML report (figures embedded), ``readout.json`` and the CSV tables."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ab_router.arms import EXPERIMENT_ARMS
from abtest.experiment.readout.analysis import ExperimentReadout
from abtest.experiment.stats import Status
from abtest.reporting import embedded_image


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
    ax.bar(list(EXPERIMENT_ARMS), readout.srm.observed, color=["#4C72B0", "#DD8452"], label="observed users")
    ax.scatter(
        list(EXPERIMENT_ARMS), readout.srm.expected, color="black", marker="_", s=600, label="expected by split"
    )
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
    images = {name: embedded_image(fig, alt="figure", dpi=110) for name, fig in figures.items()}
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
