"""DeLong's test of abtest.evaluation.delong against the pairwise definition and a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from abtest.evaluation.delong import delong_test, placement_values


def _brute_force_delong(labels, scores_a, scores_b):
    """DeLong et al. (1988) by definition: psi over every positive/negative pair, O(m·n)."""
    pos, neg = labels == 1, labels == 0
    components = []
    for scores in (scores_a, scores_b):
        x, y = scores[pos][:, None], scores[neg][None, :]
        psi = (x > y) + 0.5 * (x == y)
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([components[0][0], components[1][0]]))
    s01 = np.cov(np.vstack([components[0][1], components[1][1]]))
    m, n = pos.sum(), neg.sum()
    var = s10[0, 0] / m + s01[0, 0] / n + s10[1, 1] / m + s01[1, 1] / n - 2 * (s10[0, 1] / m + s01[0, 1] / n)
    diff = components[1][0].mean() - components[0][0].mean()
    return diff, np.sqrt(var)


def test_delong_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores_a = np.round(rng.random(60) + 0.3 * labels, 1)  # rounded: many ties
    scores_b = np.round(rng.random(60) + 0.6 * labels, 1)
    result = delong_test(labels, scores_a, scores_b, alpha=0.05)
    diff, std_error = _brute_force_delong(labels, scores_a, scores_b)
    assert result.difference == pytest.approx(diff, abs=1e-12)
    assert result.std_error == pytest.approx(std_error, rel=1e-10)
    assert result.auc_a == pytest.approx(skm.roc_auc_score(labels, scores_a), abs=1e-12)
    assert result.auc_b == pytest.approx(skm.roc_auc_score(labels, scores_b), abs=1e-12)


def test_delong_hand_computed_example():
    # 2 positives, 2 negatives. A: one discordant pair of four -> AUC 0.75; B: perfect -> AUC 1.
    labels = np.array([1, 1, 0, 0])
    scores_a = np.array([0.9, 0.4, 0.5, 0.1])
    scores_b = np.array([0.9, 0.8, 0.5, 0.1])
    v10, v01 = placement_values(labels, scores_a)
    np.testing.assert_allclose(v10, [1.0, 0.5])
    np.testing.assert_allclose(v01, [0.5, 1.0])
    result = delong_test(labels, scores_a, scores_b, alpha=0.05)
    # S10 of A = var([1, .5]) = 0.125, S01 of A = 0.125, B's components are constant -> var = 0.125/2 * 2.
    assert result.std_error == pytest.approx(np.sqrt(0.125), rel=1e-12)
    assert result.z == pytest.approx(0.25 / np.sqrt(0.125), rel=1e-12)


def test_delong_identical_scores_give_p_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50)
    result = delong_test(labels, scores, scores, alpha=0.05)
    assert result.difference == 0 and result.p_value == 1.0


def test_delong_rejects_bad_input():
    with pytest.raises(ValueError, match="0/1"):
        delong_test(np.array([0, 2, 1, 0]), np.zeros(4), np.zeros(4), alpha=0.05)
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test(np.array([1, 0, 0, 0]), np.zeros(4), np.zeros(4), alpha=0.05)
