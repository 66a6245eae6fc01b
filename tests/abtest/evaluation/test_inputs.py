"""abtest.evaluation.inputs: policies from different prepare runs, or not from the requested one, are refused."""

from __future__ import annotations

import pytest

from abtest.evaluation.inputs import PolicySource, shared_prepare_run
from abtest.tracking.lineage import LineageError


def test_policies_from_different_prepare_runs_are_rejected():
    a = PolicySource("A", "models:/m-1", "run-a", "prepare-1", {})
    b = PolicySource("B", "models:/m-2", "run-b", "prepare-2", {})
    with pytest.raises(LineageError, match="different prepare runs"):
        shared_prepare_run(a, b, requested="")
    with pytest.raises(LineageError, match="was requested"):
        shared_prepare_run(a, a, requested="prepare-9")
