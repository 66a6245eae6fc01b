"""The records readout as files: a styled, self-contained HTML page, ``readout.json`` and CSV tables.

The page leads with what a person reads at a glance: the decision (with "Do not trust this result" first when a
health check failed), the health checks as pass/fail badges, and one results table (metric, A, B, lift with its
interval drawn as a bar, P(B better), a verdict colour). Figures follow, embedded as PNG
(:func:`abtest.reporting.embedded_image`), then the guardrails, the plan and the per-day table. Inline CSS only,
no script and no external resource, so an MLflow artifact view or a browser opens it offline; every block fits
1280 px (wide tables scroll inside their own box).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, TREATMENT
from abtest.experiment.readout.experiment import HEALTH_CHECKS, METRIC_LABELS, RecordsReadout
from abtest.experiment.stats import Status
from abtest.reporting import embedded_image

# The page's sections, in order; the test checks each id is present.
SECTIONS: tuple[str, ...] = ("decision", "health", "results", "figures", "guardrails", "plan", "daily")
FILES: tuple[str, ...] = (
    "readout.html",
    "readout.json",
    "results.csv",
    "daily.csv",
    "guardrails.csv",
    "health.csv",
)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1160px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 10px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:16px}
.decision{font-size:16px;line-height:1.5}.untrusted{border-left:6px solid #cf222e;background:#ffebe9}
.trusted{border-left:6px solid #1a7f37}
.warning{font-weight:700;color:#cf222e;font-size:18px;margin:0 0 6px}
.badges{display:flex;flex-wrap:wrap;gap:8px}
.badge{display:inline-block;border-radius:999px;padding:4px 12px;font-size:13px;font-weight:600}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26;border:1px solid #cf222e}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
td.metric{white-space:normal;min-width:160px}
th{background:#f6f8fa;font-weight:600}td:first-child,th:first-child{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.bar{position:relative;width:160px;height:18px;background:#f6f8fa;border:1px solid #d0d7de;border-radius:3px}
.bar .zero{position:absolute;top:0;bottom:0;width:1px;background:#57606a}
.bar .ci{position:absolute;top:4px;height:10px;border-radius:2px}
.bar .point{position:absolute;top:1px;width:3px;height:16px;background:#1f2328}
.v-good{background:#dafbe1}.v-bad{background:#ffebe9}.v-none{background:#fff8c5}.v-na{background:#eaeef2}
.ci.v-good{background:#2da44e}.ci.v-bad{background:#cf222e}.ci.v-none{background:#bf8700}.ci.v-na{background:#8c959f}
.figures{display:flex;flex-wrap:wrap;gap:12px}.figures img{max-width:100%;height:auto}
.muted{color:#57606a;font-size:13px}
"""

_VERDICT_CLASS = {"B better": "v-good", "A better": "v-bad", "no difference": "v-none", "not computable": "v-na"}


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{float(value):.{digits}g}"


def _percent(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.1%}"


def interval_bar(low: float, point: float, high: float, *, scale: float, verdict: str) -> str:
    """The lift's interval as a horizontal bar around a zero line, on a symmetric axis of +-``scale``."""
    if not all(math.isfinite(v) for v in (low, point, high)) or scale <= 0:
        return '<div class="bar"></div>'

    def position(value: float) -> float:
        return min(max(50 + 50 * value / scale, 0.0), 100.0)

    left, right = position(low), position(high)
    css = _VERDICT_CLASS.get(verdict, "v-na")
    return (
        f'<div class="bar" title="[{low:+.4g}, {high:+.4g}]"><div class="zero" style="left:50%"></div>'
        f'<div class="ci {css}" style="left:{left:.1f}%;width:{max(right - left, 0.5):.1f}%"></div>'
        f'<div class="point" style="left:calc({position(point):.1f}% - 1px)"></div></div>'
    )


def _results_table(readout: RecordsReadout) -> str:
    table = readout.results_table()
    # One axis per metric: relative lifts are comparable across metrics, so the bars use the relative interval.
    scale = float(np.nanmax(np.abs(table[["rel_ci_low", "rel_ci_high"]].to_numpy(dtype=float)), initial=0.0))
    scale = scale * 1.1 if scale > 0 else 0.1
    head = (
        "<tr><th>metric</th><th>A</th><th>B</th><th>lift (B / A - 1)</th><th>interval</th><th>p</th>"
        "<th>P(B better)</th><th>verdict</th></tr>"
    )
    rows = []
    for row in table.itertuples(index=False):
        css = _VERDICT_CLASS.get(row.verdict, "v-na")
        bar = interval_bar(row.rel_ci_low, row.lift_rel, row.rel_ci_high, scale=scale, verdict=row.verdict)
        p_text = _number(row.p_value, 3)
        if row.role == "secondary":
            p_text += f' <span class="muted">(Holm {_number(row.adjusted_p_value, 3)})</span>'
        rows.append(
            "<tr>"
            f'<td class="metric"><b>{html.escape(METRIC_LABELS[row.metric])}</b> '
            f'<span class="muted">{html.escape(row.role)}, {html.escape(row.method)}</span></td>'
            f"<td>{_number(getattr(row, CONTROL))}</td><td>{_number(getattr(row, TREATMENT))}</td>"
            f"<td>{_percent(row.lift_rel)} [{_percent(row.rel_ci_low)}, {_percent(row.rel_ci_high)}]</td>"
            f"<td>{bar}</td>"
            f"<td>{p_text}</td><td>{_percent(row.prob_b_better)}</td>"
            f'<td class="{css}"><b>{html.escape(row.verdict)}</b></td>'
            "</tr>"
        )
    level = f"{1 - readout.config.alpha:.0%}"
    return (
        f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'
        f'<p class="muted">Bars: the {level} interval of the relative lift (axis ±{scale:.1%}, line at 0). '
        "P(B better): normal posterior on the delta-method lift, flat prior. Secondary metrics: Holm-adjusted "
        "p-values decide their verdict.</p>"
    )


def _badges(readout: RecordsReadout) -> str:
    badges = []
    for check in readout.health:
        css, mark = ("pass", "✓") if check.passed else ("fail", "✗")
        title = html.escape(f"{HEALTH_CHECKS[check.name]}: {check.detail}")
        badges.append(f'<span class="badge {css}" title="{title}">{mark} {html.escape(check.name)}</span>')
    details = "".join(
        f"<li><b>{html.escape(c.name)}</b>: {html.escape(c.detail)}</li>" for c in readout.health if not c.passed
    )
    return f'<div class="badges">{"".join(badges)}</div>' + (f"<ul>{details}</ul>" if details else "")


def readout_figures(readout: RecordsReadout) -> dict[str, Any]:
    """Cumulative lift of the primary metric per day (CI and confidence sequence), and the arms' users per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily, metric = readout.daily, readout.plan.primary_metric
    figures = {}
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.fill_between(
        daily["day"],
        daily["cs_low"].clip(-1e6, 1e6),
        daily["cs_high"].clip(-1e6, 1e6),
        alpha=0.2,
        label="confidence sequence (always valid)",
    )
    ax.fill_between(
        daily["day"], daily[f"{metric}_ci_low"], daily[f"{metric}_ci_high"], alpha=0.35, label="fixed-horizon CI"
    )
    ax.plot(daily["day"], daily[f"{metric}_lift_abs"], marker="o", label="lift B - A")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel="day", ylabel=f"{metric} lift (absolute)", title=f"Cumulative {metric} lift of B over A")
    ax.legend(fontsize=8)
    figures["lift"] = fig

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.plot(daily["day"], daily[f"users_{CONTROL}"], marker="o", label="A")
    ax.plot(daily["day"], daily[f"users_{TREATMENT}"], marker="o", label="B")
    ax.set(xlabel="day", ylabel="users (cumulative)", title=f"Users per arm (SRM p = {readout.srm.p_value:.3g})")
    ax.legend(fontsize=8)
    figures["users"] = fig
    return figures


def _table(frame: pd.DataFrame) -> str:
    return f'<div class="scroll">{frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)}</div>'


def render_html(readout: RecordsReadout, *, title: str = "A/B experiment readout") -> str:
    """The self-contained readout page (see the module docstring)."""
    import matplotlib.pyplot as plt

    figures = readout_figures(readout)
    images = "".join(embedded_image(fig, alt=f"{name} figure", dpi=100) for name, fig in figures.items())
    for fig in figures.values():
        plt.close(fig)
    trusted = "trusted" if readout.healthy else "untrusted"
    warning = "" if readout.healthy else '<p class="warning">A health check failed: see the red badges below.</p>'
    guardrail_columns = ["name", "control", "treatment", "difference", "upper_bound", "margin", "held"]
    guardrails = readout.guardrail_table()[guardrail_columns]
    summary = readout.to_dict()
    stop = readout.stop_day if readout.stop_day is not None else "never"
    plan_json = html.escape(json.dumps(summary["plan"], indent=1))
    level = summary["config"]["sequential_boundary_level"]
    sections = {
        "decision": f'<section id="decision" class="decision {trusted}">{warning}'
        f"<p>{html.escape(readout.decision)}</p>"
        f'<p class="muted">Winner: <b>{html.escape(readout.winner)}</b> · guardrails '
        f"{'held' if readout.guardrails_held else 'NOT held'} · {readout.days_observed} of "
        f"{readout.plan.planned_days} planned days</p></section>",
        "health": f'<section id="health"><h2>Health checks</h2>{_badges(readout)}</section>',
        "results": f'<section id="results"><h2>Results</h2>{_results_table(readout)}</section>',
        "figures": f'<section id="figures"><h2>Over time</h2><div class="figures">{images}</div>'
        f'<p class="muted">Sequential boundary built at level {level:.3g} '
        f"(calibrated for {readout.config.sequential_looks} looks); first day it could have stopped: "
        f"{stop}. MDE at {readout.power.power:.0%} power: "
        f"{_number(readout.power.mde_absolute)} absolute ({_percent(readout.power.mde_relative)}).</p></section>",
        "guardrails": f'<section id="guardrails"><h2>Guardrails (non-inferiority, B - A below the margin)</h2>'
        f"{_table(guardrails)}</section>",
        "plan": f'<section id="plan"><h2>Analysis plan</h2><p>{html.escape(readout.plan_note)}</p>'
        f"<pre>{plan_json}</pre>{_table(readout.arms)}</section>",
        "daily": f'<section id="daily"><h2>Per day (cumulative)</h2>{_table(readout.daily)}</section>',
    }
    body = "".join(sections[name] for name in SECTIONS)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )


def write_readout(readout: RecordsReadout, directory: Path) -> list[Path]:
    """The files of :data:`FILES` in ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "readout.html").write_text(render_html(readout))
    (directory / "readout.json").write_text(json.dumps(readout.to_dict(), indent=2, default=_json_default))
    readout.results_table().to_csv(directory / "results.csv", index=False)
    readout.daily.to_csv(directory / "daily.csv", index=False)
    readout.guardrail_table().to_csv(directory / "guardrails.csv", index=False)
    readout.health_table().to_csv(directory / "health.csv", index=False)
    return [directory / name for name in FILES]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Status):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
