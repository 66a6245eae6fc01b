"""Segments, the corrected cross-validation t-test, the figures and the report on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from abtest.evaluation.analysis import EvaluationConfig, evaluate_policies, headline_metrics
from abtest.evaluation.crossval import corrected_paired_t_test, summarise_folds
from abtest.evaluation.report import SECTIONS, ReportInputs, render_html
from abtest.evaluation.segments import define_segments
from tests.fixtures.frames import tables


def test_segments_partition_and_cold_start():
    test, train, users, items, _, _ = tables()
    segments = define_segments(test, train, users, items)
    families = {s.family for s in segments}
    assert families == {"user history", "item history", "item popularity", "genre", "gender", "age band"}
    for family in families - {"genre"}:
        total = sum(s.mask.astype(int) for s in segments if s.family == family)
        assert (total == 1).all(), family  # a partition: every row in exactly one segment
    cold_user = next(s for s in segments if s.family == "user history" and s.name == "0")
    assert set(test.loc[cold_user.mask, "user_id"]) == {80}
    cold_item = next(s for s in segments if s.family == "item history" and s.name == "0")
    assert set(test.loc[cold_item.mask, "item_id"]) == {60}
    drama = next(s for s in segments if s.family == "genre" and s.name == "Drama")
    drama_items = set(items.loc[items["genre_drama"] == 1, "item_id"])
    assert set(test.loc[drama.mask, "item_id"]) <= drama_items


def test_evaluate_policies_end_to_end_in_memory():
    test, train, users, items, score_a, score_b = tables()
    result = evaluate_policies(
        test,
        score_a,
        score_b,
        train=train,
        users=users,
        items=items,
        config=EvaluationConfig(n_bootstrap=200, alpha=0.05, k=10, seed=42),
    )
    assert result.decision.winner == "B"
    segments = result.segments
    overall_gender = segments[(segments["family"] == "gender") & (segments["metric"] == "auc")]
    assert len(overall_gender) == 2 and (overall_gender["diff_low"] > 0).all()  # B better in both genders
    assert overall_gender["n_rows"].sum() == len(test)
    metrics = headline_metrics(result)
    assert metrics["decision.winner_code"] == 1.0 and metrics["diff.auc.ci_low"] > 0
    html = render_html(
        ReportInputs(
            decision=result.decision,
            setup={"policy A": "models:/x@PolicyA"},
            comparison=result.comparison,
            delong=result.delong,
            segments=result.segments,
            figures=result.figures,
            cross_validation=None,
            n_bootstrap=200,
            alpha=0.05,
        )
    )
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "B wins" in html and "Disabled (cv_folds = 0 or 1)" in html
    assert html.count("data:image/png;base64,") == 6  # metrics, 4 curves, segment heatmap


def test_corrected_t_test_is_wider_than_the_paired_t_test():
    differences = np.array([0.010, 0.013, 0.008, 0.011, 0.012])
    t_plain, p_plain = stats.ttest_1samp(differences, 0.0)
    t, p = corrected_paired_t_test(differences, test_train_ratio=1 / 4)
    # Nadeau-Bengio: variance x (1/K + n2/n1) / (1/K) = (0.2 + 0.25) / 0.2 = 2.25 -> t shrinks by 1.5.
    assert t == pytest.approx(t_plain / 1.5)
    assert p > p_plain
    assert corrected_paired_t_test(np.zeros(3), test_train_ratio=0.5) == (0.0, 1.0)


def test_summarise_folds_pairs_by_fold():
    per_fold = pd.DataFrame(
        {
            "fold": [0, 0, 1, 1, 2, 2],
            "policy": ["A", "B"] * 3,
            "metric": "auc",
            "value": [0.70, 0.72, 0.71, 0.74, 0.69, 0.70],
        }
    )
    summary = summarise_folds(per_fold, ["auc"], test_train_ratio=0.5).iloc[0]
    assert summary["diff_mean"] == pytest.approx(0.02)
    assert summary["b_better_folds"] == 3
    assert summary["a_mean"] == pytest.approx(0.70)
