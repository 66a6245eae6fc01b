"""Fixtures of the simulate area: a small prepared dataset (no MLflow model needed)."""

from __future__ import annotations

import pytest

from abtest.tracking.lineage import PreparedData
from tests.fixtures.experiment import prepared_data


@pytest.fixture
def small_prepared() -> PreparedData:
    """60 users, 40 items, 1500 ratings split 70/15/15 by time."""
    return prepared_data()
