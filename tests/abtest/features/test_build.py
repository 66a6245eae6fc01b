"""Feature engineering: no label leakage, served lookups equal prepared features, defined cold-start behaviour."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from ab_router.features import DOT_FEATURES, FeatureLookup, assemble_features
from ab_router.schema import FEATURE_COLUMNS, ITEM_ID, USER_ID, feature_dtypes
from abtest.features.build import FeatureConfig, build_features, encode_users, fold_assignment, shuffled_folds

HISTORY_FEATURES = [c for c in FEATURE_COLUMNS if c.startswith(("user_", "item_", "mf_"))]


@pytest.fixture(scope="module")
def built(synthetic_movielens):
    splits, users, items = synthetic_movielens
    return build_features(splits, users, items, seed=7)


def test_every_split_keeps_its_columns_and_gains_the_schema_features(built, synthetic_movielens) -> None:
    splits, _, _ = synthetic_movielens
    for name, frame in built.splits.items():
        assert list(frame.columns) == [*splits[name].columns, *FEATURE_COLUMNS]
        assert frame[list(FEATURE_COLUMNS)].dtypes.to_dict() == {
            k: np.dtype(v) for k, v in feature_dtypes().items()
        }
        pd.testing.assert_frame_equal(frame[list(splits[name].columns)], splits[name])
        assert not frame[HISTORY_FEATURES].isna().any().any()


def test_a_training_rows_own_label_does_not_reach_its_features(synthetic_movielens) -> None:
    splits, users, items = synthetic_movielens
    row = 17
    flipped = splits["train"].copy()
    flipped.loc[row, "label"] = 1 - flipped.loc[row, "label"]
    flipped.loc[row, "rating"] = 6 - flipped.loc[row, "rating"]
    before = build_features(splits, users, items, seed=7).splits["train"]
    after = build_features({**splits, "train": flipped}, users, items, seed=7).splits["train"]
    pd.testing.assert_series_equal(
        before.loc[row, list(FEATURE_COLUMNS)], after.loc[row, list(FEATURE_COLUMNS)], check_names=False
    )
    # ...while it does reach other rows of the same user in other folds: the features are not constant.
    same_user = before.index[(before[USER_ID] == before.loc[row, USER_ID]) & (before.index != row)]
    assert not np.allclose(
        before.loc[same_user, "user_pos_rate"].to_numpy(), after.loc[same_user, "user_pos_rate"].to_numpy()
    )


def test_lookup_tables_reproduce_the_prepared_val_and_test_features(built) -> None:
    for name in ("val", "test"):
        frame = built.splits[name]
        served = assemble_features(
            frame[[USER_ID, ITEM_ID]], built.user_features, built.item_features, built.defaults
        )
        pd.testing.assert_frame_equal(served[list(FEATURE_COLUMNS)], frame[list(FEATURE_COLUMNS)])


def test_lookup_survives_a_json_round_trip_of_the_defaults(built) -> None:
    defaults = json.loads(json.dumps(built.defaults, allow_nan=False))
    pairs = pd.DataFrame({USER_ID: [1, 99999], ITEM_ID: [99999, 1]})
    a = assemble_features(pairs, built.user_features, built.item_features, built.defaults)
    b = assemble_features(pairs, built.user_features, built.item_features, defaults)
    pd.testing.assert_frame_equal(a, b)


def test_unseen_ids_get_global_priors_and_cold_flags(built, synthetic_movielens) -> None:
    splits, users, _ = synthetic_movielens
    train = splits["train"]
    known_user, known_item = int(train[USER_ID].iloc[0]), int(train[ITEM_ID].iloc[0])
    pairs = pd.DataFrame(
        {USER_ID: [known_user, 10_000, known_user, 10_000], ITEM_ID: [known_item, known_item, 10_000, 10_001]}
    )
    out = assemble_features(pairs, built.user_features, built.item_features, built.defaults)
    assert out["cold_user"].tolist() == [False, True, False, True]
    assert out["cold_item"].tolist() == [False, False, True, True]
    assert out["cold_user"].dtype == bool
    prior = train["label"].mean()
    unseen = out.iloc[3]
    assert unseen["user_pos_rate"] == pytest.approx(prior)
    assert unseen["item_pos_rate"] == pytest.approx(prior)
    assert unseen["user_mean_rating"] == pytest.approx(train["rating"].mean())
    assert unseen["user_count"] == 0.0 and unseen["item_count"] == 0.0
    assert unseen["gender"] == -1 and unseen["occupation"] == -1 and unseen["zip_prefix"] == -1
    assert unseen["age"] == pytest.approx(users["age"].median())
    assert np.isnan(unseen["release_year"])
    assert list(out.columns) == [USER_ID, ITEM_ID, *FEATURE_COLUMNS, "cold_user", "cold_item"]


def test_a_profiled_user_without_history_is_cold_but_keeps_the_profile(built, synthetic_movielens) -> None:
    _, users, _ = synthetic_movielens
    last = users.iloc[-1]
    out = assemble_features(
        pd.DataFrame({USER_ID: [last[USER_ID]], ITEM_ID: [1]}),
        built.user_features,
        built.item_features,
        built.defaults,
    )
    assert bool(out["cold_user"].iloc[0])
    assert out["age"].iloc[0] == last["age"]
    assert out["gender"].iloc[0] == {"M": 0, "F": 1}[last["gender"]]


def test_same_seed_same_features_and_other_seed_other_folds(synthetic_movielens) -> None:
    splits, users, items = synthetic_movielens
    a = build_features(splits, users, items, seed=3)
    b = build_features(splits, users, items, seed=3)
    c = build_features(splits, users, items, seed=4)
    for name in splits:
        pd.testing.assert_frame_equal(a.splits[name], b.splits[name])
    pd.testing.assert_frame_equal(a.user_features, b.user_features)
    assert a.defaults == b.defaults
    assert not a.splits["train"]["user_pos_rate"].equals(c.splits["train"]["user_pos_rate"])
    # val/test use the full split: only the factorisations' seeded initialisation differs
    seeded = list(DOT_FEATURES)
    pd.testing.assert_frame_equal(a.splits["test"].drop(columns=seeded), c.splits["test"].drop(columns=seeded))


def test_smoothed_rates_shrink_towards_the_prior(built, synthetic_movielens) -> None:
    splits, _, _ = synthetic_movielens
    train = splits["train"]
    strength = FeatureConfig().prior_strength
    user = int(train[USER_ID].iloc[0])
    rows = train[train[USER_ID] == user]
    expected = (rows["label"].sum() + strength * train["label"].mean()) / (len(rows) + strength)
    table = built.user_features.set_index(USER_ID)
    assert table.loc[user, "user_pos_rate"] == pytest.approx(expected)
    assert table.loc[user, "user_count"] == pytest.approx(np.log1p(len(rows)))


def test_profile_codes() -> None:
    users = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "age": [20, 30, 40],
            "gender": ["M", "F", "M"],
            "occupation": ["writer", "artist", "writer"],
            "zip_code": ["55105", "T8H1N", "0"],
        }
    )
    codes = encode_users(users)
    assert codes["gender"].tolist() == [0, 1, 0]
    assert codes["occupation"].tolist() == [1, 0, 1]
    assert codes["zip_prefix"].tolist() == [5, 10, 0]
    assert codes.dtypes.astype(str).tolist() == ["int64", "float64", "int64", "int64", "int64"]


def test_bad_inputs_are_rejected_naming_the_rule(built, synthetic_movielens) -> None:
    splits, users, items = synthetic_movielens
    with pytest.raises(ValueError, match="must include 'train'"):
        build_features({"val": splits["val"]}, users, items, seed=0)
    with pytest.raises(ValueError, match=r"n_folds must be >= 2.*got 1"):
        FeatureConfig(n_folds=1)
    with pytest.raises(ValueError, match=r"missing \['item_id'\]"):
        assemble_features(pd.DataFrame({USER_ID: [1]}), built.user_features, built.item_features, built.defaults)
    with pytest.raises(ValueError, match=r"defaults lack \['age', 'gender'"):
        FeatureLookup(built.user_features, built.item_features, {"user": {}, "item": built.defaults["item"]})
    with pytest.raises(ValueError, match=r"must list each id once; repeated: \[1, 2, 3"):
        FeatureLookup(pd.concat([built.user_features] * 2), built.item_features, built.defaults)


def test_a_held_lookup_assembles_ten_thousand_rows_fast_and_alike(built) -> None:
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({USER_ID: rng.integers(1, 80, 10_000), ITEM_ID: rng.integers(1, 60, 10_000)})
    lookup = FeatureLookup(built.user_features, built.item_features, built.defaults)
    pd.testing.assert_frame_equal(
        lookup.assemble(pairs), assemble_features(pairs, built.user_features, built.item_features, built.defaults)
    )
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        lookup.assemble(pairs)
        timings.append(time.perf_counter() - start)
    # A few ms on an idle 2-core machine; the bound leaves room for a busy one.
    assert min(timings) < 0.05


def test_cold_user_share_holds_whole_users_out_of_their_own_history(synthetic_movielens) -> None:
    splits, users, items = synthetic_movielens
    train = splits["train"]
    folds = fold_assignment(train, n_folds=5, cold_user_share=0.4, seed=1)
    folds_per_user = pd.Series(folds).groupby(train[USER_ID].to_numpy()).nunique()
    single = folds_per_user.index[folds_per_user == 1]
    assert train[USER_ID].isin(single).mean() == pytest.approx(0.4, abs=0.05)

    built = build_features(splits, users, items, seed=1, config=FeatureConfig(cold_user_share=0.4))
    cold_rows = built.splits["train"]["user_count"] == 0
    assert cold_rows.mean() == pytest.approx(0.4, abs=0.05)
    # a cold row's user rate is its fold's global prior
    priors = built.splits["train"].loc[cold_rows, "user_pos_rate"]
    assert priors.nunique() <= 5 and priors.to_numpy() == pytest.approx(train["label"].mean(), abs=0.03)


def test_the_cold_user_share_follows_the_validation_split(synthetic_movielens) -> None:
    splits, users, items = synthetic_movielens
    newcomers = splits["val"].assign(user_id=splits["val"][USER_ID] + 1000)
    built = build_features({**splits, "val": newcomers}, users, items, seed=1)
    assert (built.splits["train"]["user_count"] == 0).mean() == pytest.approx(0.9, abs=0.05)  # capped at 0.9
    warm = build_features({**splits, "val": splits["train"].head(50)}, users, items, seed=1)
    assert (warm.splits["train"]["user_count"] == 0).mean() < 0.02


@pytest.mark.parametrize("n_rows", [10, 11, 97, 1003])
@pytest.mark.parametrize("n_folds", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_shuffled_folds_are_scikit_learns_shuffled_kfold(n_rows: int, n_folds: int, seed: int) -> None:
    # prepare writes the folds out so it never imports scikit-learn; they must stay KFold's, row for row.
    from sklearn.model_selection import KFold

    expected = np.empty(n_rows, dtype=np.int64)
    splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n_rows))
    for fold, (_, rows) in enumerate(splits):
        expected[rows] = fold
    np.testing.assert_array_equal(shuffled_folds(n_rows, n_folds=n_folds, seed=seed), expected)


def test_shuffled_folds_refuse_fewer_rows_than_folds() -> None:
    with pytest.raises(ValueError, match=r"n_folds must be in \[2, n_rows=3\], got 4"):
        shuffled_folds(3, n_folds=4, seed=0)
