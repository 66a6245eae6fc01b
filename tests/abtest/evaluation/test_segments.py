"""The segments of abtest.evaluation.segments: the partitions, cold start, and segments with too few users."""

from __future__ import annotations

import pytest

from abtest.evaluation.bootstrap import BootstrapConfig
from abtest.evaluation.metrics import EvalRows, point_metrics, policy_statistics
from abtest.evaluation.segments import (
    MIN_SEGMENT_USERS,
    TOO_FEW_USERS_NOTE,
    Segment,
    compare_segments,
    define_segments,
)
from tests.fixtures.frames import ranked_rows as _ranked_rows
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


def test_segments_below_the_user_minimum_report_point_values_only():
    frame, score_a, score_b = _ranked_rows(n_users=60, per_user=20)
    rows = EvalRows.from_frame(frame)
    few = frame["user_id"].isin([0, 1, 2]).to_numpy()
    many = frame["user_id"] < MIN_SEGMENT_USERS + 5
    segments = [Segment("user history", "10-29", few), Segment("gender", "M", many.to_numpy())]
    table = compare_segments(
        rows, score_a, score_b, segments, config=BootstrapConfig(n_bootstrap=200, alpha=0.05, seed=42), k=10
    )
    small = table[table["segment"] == "10-29"].set_index("metric")
    auc_a = point_metrics(policy_statistics(rows.subset(few), score_a[few], k=10), ["auc"])["auc"]
    assert small.loc["auc", "n_users"] == 3 and small.loc["auc", "a"] == pytest.approx(auc_a)
    assert small.loc["auc", "diff"] == pytest.approx(small.loc["auc", "b"] - small.loc["auc", "a"])
    assert small[["a_low", "a_high", "diff_low", "diff_high", "p_value"]].isna().all().all()
    assert (small["note"] == TOO_FEW_USERS_NOTE).all() and "too few users" in TOO_FEW_USERS_NOTE
    large = table[table["segment"] == "M"].set_index("metric")
    assert large[["diff_low", "diff_high", "p_value"]].notna().all().all() and (large["note"] == "").all()
