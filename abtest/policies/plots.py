"""Figures of the training steps: pure functions from tables to matplotlib figures (no MLflow, no files).

matplotlib is imported when a figure is drawn, not with the module (about half a second at process start):
``import steps.train_a`` and main's parameter checks stay free of it (tests/project/test_startup.py).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # steps run headless (mlflow run, CI); must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def coefficient_figure(coefficients: pd.DataFrame, *, top: int = 30) -> Figure:
    """Horizontal bars of policy A's largest-magnitude coefficients (sign by colour)."""
    shown = coefficients[coefficients["feature"] != "intercept"].head(top).iloc[::-1]
    fig, ax = _pyplot().subplots(figsize=(8, max(3.0, 0.28 * len(shown) + 1)))
    colours = ["tab:blue" if c >= 0 else "tab:red" for c in shown["coefficient"]]
    ax.barh(shown["feature"], shown["coefficient"], color=colours)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("coefficient (log-odds per standardised unit / per category)")
    ax.set_title(f"Policy A: logistic regression, top {len(shown)} coefficients by |value|")
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.DataFrame, *, top: int = 30) -> Figure:
    """Horizontal bars of policy B's feature importance by total gain."""
    shown = importance.head(top).iloc[::-1]
    fig, ax = _pyplot().subplots(figsize=(8, max(3.0, 0.28 * len(shown) + 1)))
    ax.barh(shown["feature"], shown["gain"], color="tab:green")
    ax.set_xlabel("total gain")
    ax.set_title("Policy B: LightGBM feature importance (gain)")
    fig.tight_layout()
    return fig


def validation_curve_figure(curve: pd.DataFrame, *, best_iteration: int) -> Figure:
    """AUC and logloss per boosting iteration on train and validation, the chosen iteration marked."""
    fig, axes = _pyplot().subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("auc", "logloss"), strict=True):
        for split in ("train", "val"):
            column = f"{split}_{metric}"
            if column in curve.columns:
                ax.plot(curve["iteration"], curve[column], label=split)
        ax.axvline(best_iteration, color="grey", linestyle="--", label=f"best iteration {best_iteration}")
        ax.set_xlabel("boosting iteration")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle("Policy B: validation curve")
    fig.tight_layout()
    return fig
