"""evaluate_policies of abtest.evaluation.analysis end to end in memory, through the rendered report."""

from __future__ import annotations

from abtest.evaluation.analysis import EvaluationConfig, evaluate_policies, headline_metrics
from abtest.evaluation.report import SECTIONS, ReportInputs, render_html
from tests.fixtures.frames import tables


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
