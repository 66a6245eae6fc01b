"""Readout test fixtures: per-(day, user) tables with a planted truth, shaped like the ingest reduction's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

UserDays = Callable[..., pd.DataFrame]


def _user_days(
    *,
    n_users: int = 4000,
    days: int = 14,
    ctr_a: float = 0.05,
    ctr_b: float = 0.06,
    drop_b_every: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Users assigned 50/50, arriving over ``days`` (day 0 first) and returning half the days; every impression
    is clicked with its arm's CTR, so the true CTR lift is ``ctr_b - ctr_a``. ``drop_b_every`` = k loses every k-th
    of B's users (a logging defect: the sample ratio is off)."""
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n_users) < 0.5, "A", "B")
    ctr = np.where(arm == "A", ctr_a, ctr_b)
    first = rng.integers(0, days, n_users)
    parts = []
    for day in range(days):
        active = np.flatnonzero((first == day) | ((first < day) & (rng.random(n_users) < 0.5)))
        impressions = 1 + rng.poisson(4, active.size)
        clicks = rng.binomial(impressions, ctr[active])
        parts.append(
            pd.DataFrame(
                {
                    "day": day,
                    "user_id": active,
                    "policy": arm[active],
                    "requests": 1,
                    "impressions": impressions,
                    "clicks": clicks,
                    "score_sum": impressions * ctr[active],
                    "cold_impressions": rng.binomial(impressions, 0.03),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    if drop_b_every:
        b_users = np.flatnonzero(arm == "B")[::drop_b_every]
        frame = frame[~frame["user_id"].isin(b_users)]
    return frame.reset_index(drop=True)


@pytest.fixture
def user_days() -> UserDays:
    """A builder of per-(day, user) tables with a planted CTR per arm (see ``_user_days``)."""
    return _user_days


@pytest.fixture
def pre_period() -> pd.Series:
    """No pre-period activity (CUPED then changes nothing)."""
    return pd.Series(dtype=float)
