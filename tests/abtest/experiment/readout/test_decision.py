"""The readout's decision sentence when CUPED reduces or increases the lift's variance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from abtest.experiment.readout.analysis import analyse
from abtest.experiment.readout.decision import decision_lift, decision_sentence, variance_change_text
from abtest.experiment.stats import AnalysisConfig
from abtest.experiment.stats.ratio import Estimate


def _readout():
    rng = np.random.default_rng(0)
    users = np.arange(400)
    user_days = pd.DataFrame(
        {
            "day": 1 + users % 2,
            "user_id": users,
            "policy": np.where(users % 2 == 0, "A", "B"),
            "requests": 1,
            "impressions": 10,
            "clicks": rng.binomial(10, 0.1, users.size),
        }
    )
    covariate = pd.Series(rng.poisson(5, users.size).astype(float), index=users)
    return analyse(
        user_days,
        covariate,
        config=AnalysisConfig(sequential_tuning=400, alpha=0.05),
        days=2,
        environment="replay",
    )


def _with(readout, *, lift: Estimate, cuped: Estimate, variance_reduction: float):
    changed = dataclasses.replace(
        readout,
        lift=dataclasses.replace(readout.lift, absolute=lift, relative=None),
        cuped=dataclasses.replace(
            readout.cuped, absolute=cuped, relative=None, variance_reduction=variance_reduction
        ),
    )
    return changed, decision_sentence(changed)


@pytest.mark.parametrize(
    ("reduction", "text"), [(0.12, "-12%"), (-0.95, "+95%"), (0.0, "+0%"), (-0.001, "+0%"), (1.0, "-100%")]
)
def test_variance_change_is_signed(reduction, text):
    assert variance_change_text(reduction) == text


def test_cuped_that_reduces_variance_decides_and_prints_a_minus():
    readout, sentence = _with(
        _readout(),
        lift=Estimate(0.01, 0.02, -0.03, 0.05, 0.6),
        cuped=Estimate(0.01, 0.004, 0.002, 0.018, 0.01),
        variance_reduction=0.12,
    )
    assert decision_lift(readout) is readout.cuped
    assert sentence.startswith("Ship policy B")
    assert "(CUPED, variance -12%)" in sentence
    assert "--" not in sentence
    assert readout.to_dict()["decision_analysis"] == "cuped"


def test_cuped_that_increases_variance_is_not_used_and_says_so():
    readout, sentence = _with(
        _readout(),
        lift=Estimate(0.01, 0.004, 0.002, 0.018, 0.01),
        cuped=Estimate(0.01, 0.02, -0.03, 0.05, 0.6),
        variance_reduction=-0.95,
    )
    assert decision_lift(readout) is readout.lift
    # the decision follows the unadjusted interval [+0.002, +0.018], not CUPED's wider one
    assert sentence.startswith("Ship policy B")
    assert "CI [+0.0020, +0.0180]" in sentence
    assert "unadjusted delta method: CUPED would have increased the variance by 95%, so not used" in sentence
    assert "--" not in sentence
    assert readout.to_dict()["decision_analysis"] == "unadjusted"
