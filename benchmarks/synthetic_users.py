"""Synthetic user-level experiment data with a known truth, for validating the engine (tests and benchmark).

Each user has a click propensity ``p ~ Beta`` (mean = the arm's CTR), sees ``1 + Poisson`` impressions and clicks
``Binomial(impressions, p)``. Pre-period activity (the CUPED covariate) is the user's clicks in an earlier period
with the same propensity, so it correlates with the in-experiment clicks but not with the assignment. The
treatment multiplies every propensity by ``1 + relative_lift``, so the true CTR of an arm is its propensity mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abtest.experiment.stats.sufficient import RatioStatistic


@dataclass(frozen=True)
class UserPopulation:
    """The data-generating process; ``concentration`` is the Beta's a + b (lower = more heterogeneous users)."""

    ctr: float = 0.1
    concentration: float = 20.0
    impressions_mean: float = 10.0
    pre_impressions_mean: float = 20.0

    def draw(
        self, rng: np.random.Generator, users: int, *, relative_lift: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-user (clicks, impressions, pre-period clicks) for ``users`` users of one arm."""
        propensity = rng.beta(self.ctr * self.concentration, (1 - self.ctr) * self.concentration, size=users)
        pre_impressions = rng.poisson(self.pre_impressions_mean, size=users)
        pre_clicks = rng.binomial(pre_impressions, propensity)
        impressions = 1 + rng.poisson(self.impressions_mean - 1, size=users)
        treated = np.clip(propensity * (1 + relative_lift), 0.0, 1.0)
        clicks = rng.binomial(impressions, treated)
        return clicks, impressions, pre_clicks

    def statistic(self, rng: np.random.Generator, users: int, *, relative_lift: float = 0.0) -> RatioStatistic:
        """Sufficient statistics of one arm of ``users`` users, with the pre-period clicks as covariate."""
        clicks, impressions, pre_clicks = self.draw(rng, users, relative_lift=relative_lift)
        return RatioStatistic.from_units(clicks, impressions, pre_clicks)
