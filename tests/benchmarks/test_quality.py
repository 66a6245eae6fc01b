"""The quality benchmark's bookkeeping: parameters come from MLproject and the bar is judged as issue 3 states."""

from __future__ import annotations

import pytest

from benchmarks.quality import QualityRow, bar_failures, policy_params, seed_summary, with_seed
from steps.cli import parameter_defaults


def _row(split: str, a_auc: float, b_auc: float, seed: int = 42) -> QualityRow:
    return QualityRow(split, seed, 100, 10, a_auc, b_auc, 0.5, 0.5, 1.0, 1.0, 1.0)


def test_the_bar_needs_b_above_a_everywhere_and_autoint_b_at_least_087() -> None:
    assert bar_failures([_row("temporal", 0.70, 0.71), _row("autoint", 0.86, 0.87)]) == []
    assert bar_failures([_row("random", 0.80, 0.80)]) == ["random: B AUC 0.8000 does not beat A AUC 0.8000"]
    assert bar_failures([_row("autoint", 0.85, 0.869)]) == ["autoint: B AUC 0.8690 < 0.87"]


def test_policy_params_are_mlproject_defaults_with_the_prepare_seed_and_overrides() -> None:
    prepare, a, b = policy_params({"num_leaves": "63"})
    assert prepare == parameter_defaults("prepare")
    assert b["num_leaves"] == "63" and a["C"] == parameter_defaults("train_a")["C"]
    assert a["seed"] == b["seed"] == prepare["seed"]
    with pytest.raises(ValueError, match=r"unknown parameters \['leaves'\]"):
        policy_params({"leaves": "3"})


def test_seed_summary_counts_wins_and_margins_per_split() -> None:
    rows = [_row("random", 0.80, 0.803, 1), _row("temporal", 0.70, 0.69, 1), _row("random", 0.81, 0.809, 2)]
    assert seed_summary(rows) == [
        ["random", 2, "1/2", "+0.0010", "-0.0010", "+0.0030"],
        ["temporal", 1, "0/1", "-0.0100", "-0.0100", "-0.0100"],
    ]


def test_with_seed_sets_the_seed_of_every_stage() -> None:
    prepare, a, b = with_seed(*policy_params({}), 7)
    assert prepare["seed"] == a["seed"] == b["seed"] == "7"
    assert b["num_leaves"] == parameter_defaults("train_b")["num_leaves"]
