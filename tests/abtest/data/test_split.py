"""Labels and splits: rules per mode, no leakage across the time cut, determinism, validation."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from abtest.data.split import add_label, split_interactions, split_profile, temporal_split, validate_fractions


def interactions(n: int = 1000, *, seed: int = 0, distinct_times: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = rng.integers(0, distinct_times or 10 * n, size=n)
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 50, size=n),
            "item_id": rng.integers(1, 80, size=n),
            "rating": rng.integers(1, 6, size=n),
            "timestamp": 1_000_000 + times,
        }
    ).astype(np.int64)


def parquet_sha(frame: pd.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def test_label_is_rating_at_or_above_threshold() -> None:
    frame = pd.DataFrame({"rating": [1, 3, 4, 5]})
    assert add_label(frame, positive_threshold=4)["label"].tolist() == [0, 0, 1, 1]
    assert add_label(frame, positive_threshold=3)["label"].tolist() == [0, 1, 1, 1]
    assert add_label(frame, positive_threshold=4)["label"].dtype == np.int64
    with pytest.raises(ValueError, match=r"positive_threshold must be a rating 1..5, got 0"):
        add_label(frame, positive_threshold=0)


def test_temporal_split_sizes_and_time_order() -> None:
    frame = interactions(1000)
    splits = split_interactions(frame, mode="temporal", positive_threshold=4, val_frac=0.1, test_frac=0.2, seed=0)
    sizes = [len(splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 1000
    assert sizes == pytest.approx([700, 100, 200], abs=5)  # ties at a cut may move a few rows
    assert splits["train"]["timestamp"].max() < splits["val"]["timestamp"].min()
    assert splits["val"]["timestamp"].max() < splits["test"]["timestamp"].min()
    assert list(splits["train"].columns) == ["user_id", "item_id", "rating", "timestamp", "label"]


def test_temporal_ties_at_the_cut_stay_together() -> None:
    # 10 distinct timestamps over 1000 rows: every cut falls inside a block of equal timestamps.
    frame = interactions(1000, distinct_times=10)
    splits = temporal_split(add_label(frame, positive_threshold=4), val_frac=0.15, test_frac=0.15)
    assert sum(len(s) for s in splits.values()) == 1000
    assert splits["train"]["timestamp"].max() < splits["val"]["timestamp"].min()
    assert splits["val"]["timestamp"].max() < splits["test"]["timestamp"].min()


def test_temporal_split_with_one_timestamp_cannot_make_val() -> None:
    frame = interactions(100, distinct_times=1)
    with pytest.raises(ValueError, match=r"left \['val', 'test'\] empty"):
        split_interactions(frame, mode="temporal", positive_threshold=4, val_frac=0.1, test_frac=0.1, seed=0)


def test_random_split_is_seeded_and_byte_identical() -> None:
    frame = interactions(2000)
    kwargs = {"mode": "random", "positive_threshold": 4, "val_frac": 0.1, "test_frac": 0.1}
    first = split_interactions(frame, seed=5, **kwargs)
    second = split_interactions(frame, seed=5, **kwargs)
    other = split_interactions(frame, seed=6, **kwargs)
    assert [parquet_sha(first[s]) for s in first] == [parquet_sha(second[s]) for s in second]
    assert parquet_sha(first["test"]) != parquet_sha(other["test"])
    assert [len(first[s]) for s in ("train", "val", "test")] == [1600, 200, 200]
    # a partition: every row exactly once
    rows = pd.concat(first.values()).sort_values(list(frame.columns)).reset_index(drop=True)
    expected = add_label(frame, positive_threshold=4).sort_values(list(frame.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, expected)


def test_temporal_split_is_byte_identical_too() -> None:
    frame = interactions(2000, distinct_times=300)
    kwargs = {"mode": "temporal", "positive_threshold": 4, "val_frac": 0.1, "test_frac": 0.1, "seed": 1}
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    first = split_interactions(frame, **kwargs)
    second = split_interactions(shuffled, **kwargs)  # input order does not matter: ties sort by ids
    assert [parquet_sha(first[s]) for s in first] == [parquet_sha(second[s]) for s in second]


def test_autoint_drops_threes_labels_above_three_and_splits_80_10_10() -> None:
    frame = interactions(3000)
    splits = split_interactions(frame, mode="autoint", positive_threshold=5, val_frac=0.3, test_frac=0.3, seed=0)
    kept = int((frame["rating"] != 3).sum())
    assert [len(splits[s]) for s in ("train", "val", "test")] == [
        kept - 2 * round(kept * 0.1),
        round(kept * 0.1),
        round(kept * 0.1),
    ]
    for split in splits.values():
        assert not split["rating"].eq(3).any()
        assert (split["label"] == (split["rating"] >= 4)).all()


@pytest.mark.parametrize(
    ("val_frac", "test_frac", "message"),
    [
        (0.0, 0.1, "val_frac must be strictly between 0 and 1, got 0.0"),
        (0.1, 1.0, "test_frac must be strictly between 0 and 1, got 1.0"),
        (0.5, 0.5, r"val_frac \+ test_frac must be below 1"),
        (-0.1, 0.1, "val_frac must be strictly between"),
    ],
)
def test_fractions_are_validated(val_frac: float, test_frac: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_fractions(val_frac=val_frac, test_frac=test_frac)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"split must be one of \['temporal', 'random', 'autoint'\], got 'by_user'"
    ):
        split_interactions(
            interactions(10), mode="by_user", positive_threshold=4, val_frac=0.1, test_frac=0.1, seed=0
        )


def test_profile_counts_cold_users_and_items() -> None:
    splits = {
        "train": pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10], "rating": [5, 1, 4],
                               "timestamp": [1, 2, 3], "label": [1, 0, 1]}),
        "val": pd.DataFrame({"user_id": [2, 3], "item_id": [12, 10], "rating": [3, 4],
                             "timestamp": [4, 5], "label": [0, 1]}),
        "test": pd.DataFrame({"user_id": [4], "item_id": [13], "rating": [5], "timestamp": [6], "label": [1]}),
    }  # fmt: skip
    profile = split_profile(splits)
    assert profile["train"] == {
        "rows": 3, "users": 2, "items": 2, "positive_rate": pytest.approx(2 / 3),
        "mean_rating": pytest.approx(10 / 3), "time_min": 1, "time_max": 3, "cold_users": 0, "cold_items": 0,
    }  # fmt: skip
    assert (profile["val"]["cold_users"], profile["val"]["cold_items"]) == (1, 1)
    assert (profile["test"]["cold_users"], profile["test"]["cold_items"], profile["test"]["positive_rate"]) == (
        1,
        1,
        1.0,
    )
