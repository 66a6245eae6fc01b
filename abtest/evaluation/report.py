"""One self-contained HTML report: the decision first, then the evidence, with every figure embedded as PNG.

A reviewer opens ``report.html`` from the MLflow UI's artifact view and can decide without anything else: no
external scripts, styles or images.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ab_router.arms import EXPERIMENT_ARMS, policy_arm
from abtest.evaluation.decision import Decision
from abtest.evaluation.delong import DelongResult
from abtest.evaluation.segments import MIN_CLASS_ROWS, MIN_SEGMENT_USERS
from abtest.reporting import embedded_image

if TYPE_CHECKING:  # types only (inputs would import MLflow, the figures matplotlib)
    from matplotlib.figure import Figure

    from abtest.evaluation.analysis import EvaluationResult
    from abtest.evaluation.crossval import CrossValidationResult
    from abtest.evaluation.inputs import PolicySource

# Section ids, in reading order; tests check that every one is present.
SECTIONS: tuple[str, ...] = (
    "decision",
    "setup",
    "headline",
    "metrics-chart",
    "curves",
    "delong",
    "segments",
    "cross-validation",
    "method",
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.verdict { font-size: 1.35em; padding: 0.7em 1em; border-radius: 6px; margin: 0.8em 0; }
.B { background: #fff1e0; border-left: 6px solid #f28e2b; }
.A { background: #e7f0fa; border-left: 6px solid #4e79a7; }
.none { background: #f0f0f0; border-left: 6px solid #999; }
img { max-width: 100%; margin: 0.4em 0; } .note { color: #555; font-size: 0.9em; }
details { margin: 0.5em 0; }
"""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows; the evaluate step fills it."""

    decision: Decision
    setup: Mapping[str, Any]
    comparison: pd.DataFrame
    delong: DelongResult
    segments: pd.DataFrame
    figures: Mapping[str, Figure | bytes]  # a figure, or its PNG already rendered (the step renders each once)
    cross_validation: CrossValidationResult | None
    n_bootstrap: int
    alpha: float


def _table(frame: pd.DataFrame, *, digits: int = 4) -> str:
    formatters = {
        column: (
            lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{d}f}"
        )
        for column in frame.columns
        if pd.api.types.is_float_dtype(frame[column])
    }
    return frame.to_html(index=False, formatters=formatters, border=0, na_rep="", escape=True)


def headline_table(comparison: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """metric, A [CI], B [CI], B − A [CI], p: the numbers a reviewer reads first."""
    level = f"{100 * (1 - alpha):g}%"

    def interval(value: float, low: float, high: float) -> str:
        return f"{value:.4f}" if pd.isna(low) else f"{value:.4f} [{low:.4f}, {high:.4f}]"

    def difference(value: float, low: float, high: float) -> str:
        return f"{value:+.4f}" if pd.isna(low) else f"{value:+.4f} [{low:+.4f}, {high:+.4f}]"

    def note(row: Any) -> str:
        if getattr(row, "uninformative", False):
            bound = f"{row.a:g}"
            return f"uninformative here: both policies at {bound} on every replicate; not evidence either way"
        if pd.isna(row.a_low):
            return "point values only: a set size, biased under user resampling (no interval or p)"
        return ""

    return pd.DataFrame(
        {
            "metric": comparison["metric"],
            "better": comparison["higher_is_better"].map({True: "higher", False: "lower"}),
            f"A [{level} CI]": [interval(r.a, r.a_low, r.a_high) for r in comparison.itertuples()],
            f"B [{level} CI]": [interval(r.b, r.b_low, r.b_high) for r in comparison.itertuples()],
            f"B − A [{level} CI]": [difference(r.diff, r.diff_low, r.diff_high) for r in comparison.itertuples()],
            "bootstrap p": comparison["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.3g}"),
            "note": [note(r) for r in comparison.itertuples()],
        }
    )


def comparison_setup(
    sources: Mapping[str, PolicySource],
    result: EvaluationResult,
    *,
    prepare_run: str,
    prepare_params: Mapping[str, str],
    positive_rate: float,
    cross_validation: str,
    evaluate_run: str,
) -> dict[str, str]:
    """The report's "What was compared" table (also in ``decision.json``): models, data, options, the run."""
    config = result.config
    return {
        **{
            f"policy {arm}": f"{sources[arm].model_uri} ({policy_arm(arm).train_entry_point} run "
            f"{sources[arm].training_run})"
            for arm in EXPERIMENT_ARMS
        },
        "prepare run": f"{prepare_run} ({prepare_params.get('dataset', '?')}, split="
        f"{prepare_params.get('split', '?')})",
        "test rows / users / items": f"{result.n_rows} / {result.n_users} / {result.n_items}",
        "test positive rate": f"{positive_rate:.4f}",
        "alpha, bootstrap replicates, k": f"{config.alpha:g}, {config.n_bootstrap}, {config.k}",
        "cross-validation": cross_validation,
        "evaluate run": evaluate_run,
    }


def _image(figure: Figure | bytes | None, *, alt: str) -> str:
    """An inline ``<img>`` of a figure or of its PNG bytes ("" for none)."""
    if isinstance(figure, bytes):
        encoded = base64.b64encode(figure).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
    return embedded_image(figure, alt=alt)


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def render_html(inputs: ReportInputs) -> str:
    """The report as one HTML string."""
    decision, delong = inputs.decision, inputs.delong
    level = f"{100 * (1 - inputs.alpha):g}%"
    setup_rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in inputs.setup.items()
    )
    figures = inputs.figures
    delong_frame = pd.DataFrame([asdict(delong)])
    parts = [
        _section(
            "decision",
            "Decision",
            f'<div class="verdict {decision.winner}"><b>{html.escape(decision.label)}</b> on the primary metric '
            f"({html.escape(decision.primary_metric.upper())}) at alpha = {inputs.alpha:g}</div>"
            f"<p>{html.escape(decision.reason)}</p>",
        ),
        _section("setup", "What was compared", f"<table>{setup_rows}</table>"),
        _section(
            "headline",
            "Headline metrics",
            f"<p>Same test rows, same order, for both policies. Intervals: {level} percentile intervals of a "
            f"paired user-clustered bootstrap ({inputs.n_bootstrap} replicates; users resampled, not rows). "
            f"p: two-sided bootstrap p-value of B − A = 0.</p>"
            + _table(headline_table(inputs.comparison, inputs.alpha)),
        ),
        _section("metrics-chart", "Metrics with intervals", _image(figures.get("metrics"), alt="metrics")),
        _section(
            "curves",
            "Curves (A and B on the same axes)",
            "".join(
                f"<h3>{title}</h3>{_image(figures.get(name), alt=title)}"
                for name, title in (
                    ("roc", "ROC"),
                    ("precision_recall", "Precision-recall"),
                    ("calibration", "Calibration (reliability diagram with counts)"),
                    ("lift_gain", "Cumulative gain and lift"),
                )
            ),
        ),
        _section(
            "delong",
            "DeLong test of the AUC difference",
            "<p>DeLong, DeLong &amp; Clarke-Pearson (1988), fast midrank form (Sun &amp; Xu 2014). It treats rows "
            "as independent, so its interval is usually narrower than the user-clustered one above.</p>"
            + _table(delong_frame, digits=5),
        ),
        _section(
            "segments",
            "Segments",
            "<p>The same paired comparison inside each segment (users resampled within the segment). Empty cells: "
            f"fewer than {MIN_CLASS_ROWS} positives or negatives. Segments with fewer than {MIN_SEGMENT_USERS} "
            "users show point values only (marked too few users): no interval or p-value. A row belongs to every "
            "genre of its movie.</p>"
            + _image(figures.get("segments"), alt="segment heatmap")
            + "<details><summary>Segment table</summary>"
            + _table(inputs.segments)
            + "</details>",
        ),
        _section("cross-validation", "Cross-validation", _cross_validation_body(inputs.cross_validation, figures)),
        _section(
            "method",
            "How the decision was reached",
            "<ul><li>The primary metric (AUC) is fixed in advance: one decision, not a search over metrics; the "
            "other metrics are secondary evidence.</li>"
            f"<li>B wins when the {level} paired user-clustered bootstrap interval of AUC(B) − AUC(A) lies "
            "above 0 <em>and</em> DeLong's two-sided p &lt; alpha with a positive difference; "
            "A wins symmetrically; otherwise there is no significant difference.</li>"
            "<li>Ranking metrics are computed per user over that user's test items (users with at least one "
            "positive); coverage is the share of test items that appear in some user's top k. Coverage is a set "
            "size: a bootstrap sample holds about 63% of the distinct users, so every replicate covers fewer "
            "items and its percentile intervals (for A, B and B − A) would miss the point estimate; it is "
            "reported as point values without interval or p. ECE (a sum of absolute gaps) is biased upwards "
            "under resampling, so its per-policy intervals may not contain the point estimate; read its paired "
            "difference B − A.</li>"
            "<li>A metric marked <em>uninformative here</em> has both policies at the same end of its range (0 "
            "or 1) at the point estimate and on every bootstrap replicate (e.g. hit rate at k when every test "
            "user has many positives): it cannot tell the policies apart on these rows.</li>"
            "<li>Expected calibration error: 10 equal-width bins, |observed − predicted positives| / rows.</li>"
            "<li>Cross-validation folds cut the training and validation rows (the test split stays untouched); "
            "with prepare's temporal split they go forward in time (each fold trains on the past and is scored "
            "on the next block, early stopping on the latest rows of its training part), otherwise they are "
            "random K-fold; features are rebuilt per fold from that fold's training part; the per-fold "
            "difference is tested with the Nadeau-Bengio corrected t-test (mean n_test/n_train over folds).</li>"
            "</ul>",
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>A/B evaluation: {html.escape(decision.label)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>A/B evaluation: policy A vs policy B</h1>\n" + "\n".join(parts) + "</body></html>\n"
    )


def _cross_validation_body(result: CrossValidationResult | None, figures: Mapping[str, Figure | bytes]) -> str:
    if result is None:
        return "<p>Disabled (cv_folds = 0 or 1).</p>"
    return (
        f"<p><b>Scheme: {html.escape(result.description)}.</b></p>"
        "<p>Both policies refit with their logged parameters on each fold; mean ± std over folds, the paired "
        "per-fold difference B − A and the Nadeau-Bengio corrected t-test (variance inflated by the mean "
        "n_test/n_train of the folds).</p>"
        + _table(result.summary)
        + _image(figures.get("cross_validation"), alt="cross-validation box plots")
        + "<details><summary>Per-fold metrics</summary>"
        + _table(
            result.folds.pivot_table(index=["metric", "fold"], columns="policy", values="value").reset_index()
        )
        + "</details>"
    )
