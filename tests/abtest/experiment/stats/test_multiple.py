"""Holm's correction: the step-down values by hand and statsmodels' own, NaN metrics left out of the family."""

from __future__ import annotations

import math

import pytest

from abtest.experiment.stats.multiple import holm


def test_holm_step_down_by_hand():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03}, alpha=0.05)
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert {m: r.adjusted_p_value for m, r in adjusted.items()} == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert [r.significant for r in adjusted.values()] == [True, False, False]
    assert list(adjusted) == ["a", "b", "c"]


def test_single_metric_is_not_adjusted_and_nan_is_not_counted():
    adjusted = holm({"clicks_per_user": 0.02, "broken": math.nan}, alpha=0.05)
    assert adjusted["clicks_per_user"].adjusted_p_value == pytest.approx(0.02)
    assert adjusted["clicks_per_user"].significant
    assert math.isnan(adjusted["broken"].adjusted_p_value) and not adjusted["broken"].significant
