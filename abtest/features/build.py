"""Feature engineering for every stage: profile codes plus history statistics learnt from the training split.

Inputs: the normalised split frames (interaction columns + label), the users table and the items table.
Outputs (:class:`FeatureTables`): each split with FEATURE_COLUMNS appended, the per-user and per-item lookup tables
the served router reads, and JSON-serialisable defaults for ids the tables do not know.

Leakage rules: history statistics come from the training split only. A training row's history features are
out-of-fold (K seeded folds: a row's features are computed from the other folds), so no row sees its own label;
val/test rows and the lookup tables use the statistics of the whole training split. All rows are assembled by
:func:`ab_router.features.assemble_features`, the function the router serves with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ab_router.features import (
    DISLIKED_PREFIX,
    DOT_FEATURES,
    ITEM_DIRECTION_PREFIX,
    ITEM_LATENT_PREFIX,
    ITEM_SEGMENT_PREFIX,
    LIKED_PREFIX,
    USER_LATENT_PREFIX,
    USER_SEGMENT_PREFIX,
    assemble_features,
)
from ab_router.schema import (
    FEATURE_COLUMNS,
    GENRE_COLUMNS,
    ITEM_ID,
    LABEL,
    RATING,
    TASTE_COLUMNS,
    USER_ID,
)
from abtest.features.factorization import Factorization, FactorizationConfig, fit_factorization

log = logging.getLogger(__name__)

GENDER_CODES: dict[str, int] = {"M": 0, "F": 1}
UNKNOWN_CODE = -1
# zip_prefix: the first digit 0-9, or this code for a zip that starts with a letter (Canadian, foreign).
NON_DIGIT_ZIP_CODE = 10


@dataclass(frozen=True)
class FeatureConfig:
    """How history statistics are smoothed and folded; the defaults are what `prepare` uses."""

    n_folds: int = 5
    prior_strength: float = 10.0  # pseudo-ratings at the global prior in smoothed user/item rates and means
    genre_prior_strength: float = 5.0  # pseudo-ratings at the user's own rate in each genre's taste
    # matrix factorisation of the ratings (mf_score); regularisation tuned on ML-100K's validation split
    factorization: FactorizationConfig = field(default_factory=lambda: FactorizationConfig(regularization=20.0))
    # Share of training rows whose user is held out of every fold's history, so the models learn how a user
    # without history behaves. None = the share of validation rows whose user has no training history (ids
    # only, no labels): ~0 for random splits, most rows for a temporal split, where new users dominate.
    cold_user_share: float | None = None

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be >= 2 so training rows get out-of-fold features, got {self.n_folds}")
        if self.cold_user_share is not None and not 0.0 <= self.cold_user_share < 1.0:
            raise ValueError(f"cold_user_share must be in [0, 1) or None, got {self.cold_user_share}")
        if self.prior_strength <= 0 or self.genre_prior_strength <= 0:
            raise ValueError(
                "prior strengths must be > 0, got "
                f"prior_strength={self.prior_strength}, genre_prior_strength={self.genre_prior_strength}"
            )


@dataclass(frozen=True)
class FeatureTables:
    """What :func:`build_features` returns; `prepare` logs the tables and defaults as artifacts."""

    splits: dict[str, pd.DataFrame]  # each input frame + FEATURE_COLUMNS
    user_features: pd.DataFrame  # user_id + user columns (features and vectors for pair features)
    item_features: pd.DataFrame  # item_id + item columns
    defaults: dict[str, dict[str, Any]]  # {"user": {column: value}, "item": {...}}; null = NaN


def encode_users(users: pd.DataFrame) -> pd.DataFrame:
    """user_id and the profile features as numbers: age, and integer codes of gender, occupation, zip prefix."""
    occupations = sorted(users["occupation"].dropna().astype(str).unique())
    zip_first = users["zip_code"].astype(str).str[:1]
    zip_prefix = np.where(
        zip_first.str.isdigit(), pd.to_numeric(zip_first, errors="coerce"), NON_DIGIT_ZIP_CODE
    ).astype(np.float64)
    zip_prefix[(zip_first == "").to_numpy() | users["zip_code"].isna().to_numpy()] = UNKNOWN_CODE
    return pd.DataFrame(
        {
            USER_ID: users[USER_ID].to_numpy(dtype=np.int64),
            "age": users["age"].to_numpy(dtype=np.float64),
            "gender": users["gender"].map(GENDER_CODES).fillna(UNKNOWN_CODE).to_numpy(dtype=np.int64),
            "occupation": users["occupation"]
            .map({name: code for code, name in enumerate(occupations)})
            .fillna(UNKNOWN_CODE)
            .to_numpy(dtype=np.int64),
            "zip_prefix": zip_prefix.astype(np.int64),
        }
    )


def encode_items(items: pd.DataFrame) -> pd.DataFrame:
    """item_id, release year and genre flags."""
    frame = items[[ITEM_ID, "release_year", *GENRE_COLUMNS]].copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(np.int64)
    frame["release_year"] = frame["release_year"].astype(np.float64)
    frame[list(GENRE_COLUMNS)] = frame[list(GENRE_COLUMNS)].astype(np.int64)
    return frame.reset_index(drop=True)


def _smoothed(total: pd.Series, count: pd.Series, prior: float, strength: float) -> pd.Series:
    """Bayesian average: ``strength`` pseudo-observations at ``prior`` shrink small samples towards it."""
    return (total + strength * prior) / (count + strength)


def _side_statistics(
    history: pd.DataFrame,
    key: str,
    prefix: str,
    *,
    positive_prior: float,
    rating_prior: float,
    variance_prior: float,
    config: FeatureConfig,
) -> pd.DataFrame:
    """Count, smoothed positive rate, mean rating and rating spread per ``key`` (user_id or item_id).

    The spread lets a tree model turn a predicted rating into P(rating >= threshold) per user: the same
    predicted 3.6 is a likely positive for a user whose ratings vary a lot and an unlikely one for a steady user.
    """
    grouped = history.groupby(key)
    count = grouped.size()
    ratings = grouped[RATING]
    squared_deviation = ratings.var(ddof=0).fillna(0.0) * count
    return pd.DataFrame(
        {
            f"{prefix}_count": count,
            f"{prefix}_pos_rate": _smoothed(grouped[LABEL].sum(), count, positive_prior, config.prior_strength),
            f"{prefix}_mean_rating": _smoothed(ratings.sum(), count, rating_prior, config.prior_strength),
            f"{prefix}_rating_std": np.sqrt(
                _smoothed(squared_deviation, count, variance_prior, config.prior_strength)
            ),
        }
    )


def _user_taste(
    history: pd.DataFrame, item_profiles: pd.DataFrame, user_pos_rate: pd.Series, config: FeatureConfig
) -> pd.DataFrame:
    """Per user and genre: positive rate among the user's rated items of that genre, shrunk to the user's rate."""
    genres = (
        item_profiles.set_index(ITEM_ID)[list(GENRE_COLUMNS)]
        .reindex(history[ITEM_ID].to_numpy())
        .fillna(0)
        .to_numpy(dtype=np.float64)
    )
    labels = history[LABEL].to_numpy(dtype=np.float64)[:, None]
    users = history[USER_ID].to_numpy()
    rated = pd.DataFrame(genres, columns=TASTE_COLUMNS).groupby(users).sum()
    liked = pd.DataFrame(genres * labels, columns=TASTE_COLUMNS).groupby(users).sum()
    prior = user_pos_rate.reindex(rated.index).to_numpy()[:, None]
    strength = config.genre_prior_strength
    return (liked + strength * prior) / (rated + strength)


# Demographic segments: gender × age band (ML-1M's age bands, which ML-100K ages fall into too).
AGE_BAND_EDGES: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
N_SEGMENTS = len(GENDER_CODES) * (len(AGE_BAND_EDGES) + 1)


def user_segments(user_profiles: pd.DataFrame) -> pd.DataFrame:
    """One-hot segment (gender × age band) per user; all zeros when gender or age is unknown."""
    band = np.searchsorted(np.asarray(AGE_BAND_EDGES), user_profiles["age"].to_numpy(), side="right")
    gender = user_profiles["gender"].to_numpy()
    known = (gender >= 0) & user_profiles["age"].notna().to_numpy()
    segment = np.where(known, gender * (len(AGE_BAND_EDGES) + 1) + band, -1)
    onehot = (segment[:, None] == np.arange(N_SEGMENTS)[None, :]).astype(np.float64)
    columns = [f"{USER_SEGMENT_PREFIX}{k}" for k in range(N_SEGMENTS)]
    return pd.DataFrame(onehot, index=pd.Index(user_profiles[USER_ID].to_numpy(), name=USER_ID), columns=columns)


def _item_segment_rates(
    history: pd.DataFrame, segments: pd.DataFrame, item_pos_rate: pd.Series, config: FeatureConfig
) -> pd.DataFrame:
    """Per item and segment: positive rate among that segment's ratings, shrunk to the item's own rate."""
    onehot = segments.reindex(history[USER_ID].to_numpy()).fillna(0).to_numpy()
    labels = history[LABEL].to_numpy(dtype=np.float64)[:, None]
    items = history[ITEM_ID].to_numpy()
    columns = [f"{ITEM_SEGMENT_PREFIX}{k}" for k in range(N_SEGMENTS)]
    rated = pd.DataFrame(onehot, columns=columns).groupby(items).sum()
    liked = pd.DataFrame(onehot * labels, columns=columns).groupby(items).sum()
    prior = item_pos_rate.reindex(rated.index).to_numpy()[:, None]
    return (liked + config.prior_strength * prior) / (rated + config.prior_strength)


def _taste_centroids(
    history: pd.DataFrame, factors: Factorization, n_factors: int
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Item directions (unit latent factors) and each user's mean direction over liked and over disliked items.

    Their dot products are the cosine-like similarity of an item to what the user liked and to what the user
    disliked: a neighbourhood signal beside the factorisation's own prediction. Both vectors come from the same
    fold model, so the arbitrary basis of its latent space cancels in the dot product.
    """
    latent = factors.item_vectors.iloc[:, :n_factors].to_numpy()
    directions = latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-12)
    item_index = factors.item_vectors.index
    rows = directions[item_index.get_indexer(history[ITEM_ID].to_numpy())]
    users = history[USER_ID].to_numpy()
    liked = history[LABEL].to_numpy() == 1
    user_frames = []
    for prefix, mask in ((LIKED_PREFIX, liked), (DISLIKED_PREFIX, ~liked)):
        columns = [f"{prefix}{k}" for k in range(n_factors)]
        total = pd.DataFrame(rows * mask[:, None], columns=columns).groupby(users).sum()
        count = pd.Series(mask.astype(np.float64)).groupby(users).sum()
        user_frames.append(total.div(np.maximum(count, 1.0), axis=0))
    item_frame = pd.DataFrame(
        directions, index=item_index, columns=[f"{ITEM_DIRECTION_PREFIX}{k}" for k in range(n_factors)]
    )
    user_latent = factors.user_vectors.iloc[:, :n_factors].set_axis(
        [f"{USER_LATENT_PREFIX}{k}" for k in range(n_factors)], axis=1
    )
    item_latent = pd.DataFrame(
        latent, index=item_index, columns=[f"{ITEM_LATENT_PREFIX}{k}" for k in range(n_factors)]
    )
    return [pd.concat([*user_frames, user_latent], axis=1)], [item_frame, item_latent]


def history_tables(
    history: pd.DataFrame,
    user_profiles: pd.DataFrame,
    item_profiles: pd.DataFrame,
    *,
    config: FeatureConfig,
    seed: int,
    count_scale: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """User and item lookup tables (profiles + statistics of ``history``) and defaults for unknown ids.

    ``count_scale`` rescales counts learnt on a fraction of the training rows (out-of-fold: K/(K-1)) so their
    distribution matches counts learnt on all of them, and divides every prior strength and the factorisation's
    ridge penalty by it: a fold's history has 1/count_scale of each user's and item's rows, so the same shrinkage
    relative to the data keeps the spread of its features equal to the spread of the served (whole-split) ones.
    """
    config = replace(
        config,
        prior_strength=config.prior_strength / count_scale,
        genre_prior_strength=config.genre_prior_strength / count_scale,
        factorization=replace(
            config.factorization, regularization=config.factorization.regularization / count_scale
        ),
    )
    positive_prior = float(history[LABEL].mean())
    rating_prior = float(history[RATING].mean())
    variance_prior = float(history[RATING].var(ddof=0))
    stats = {
        "positive_prior": positive_prior,
        "rating_prior": rating_prior,
        "variance_prior": variance_prior,
        "config": config,
    }
    user_stats = _side_statistics(history, USER_ID, "user", **stats)
    item_stats = _side_statistics(history, ITEM_ID, "item", **stats)
    taste = _user_taste(history, item_profiles, user_stats["user_pos_rate"], config)
    segments = user_segments(user_profiles)
    segment_rates = _item_segment_rates(history, segments, item_stats["item_pos_rate"], config)
    factor_frames, factor_defaults = [[], []], [{}, {}]
    factors = fit_factorization(
        history[USER_ID].to_numpy(),
        history[ITEM_ID].to_numpy(),
        history[RATING].to_numpy(),
        config=config.factorization,
        seed=seed,
    )
    user_prefix, item_prefix = DOT_FEATURES["mf_score"]
    for side, (vectors, default, prefix) in enumerate(
        (
            (factors.user_vectors, factors.default_user(), user_prefix),
            (factors.item_vectors, factors.default_item(), item_prefix),
        )
    ):
        named = vectors.rename(columns=lambda k, prefix=prefix: f"{prefix}{k}")
        factor_frames[side].append(named)
        factor_defaults[side].update(zip(named.columns, default.tolist(), strict=True))
    for side, frames in enumerate(_taste_centroids(history, factors, config.factorization.n_factors)):
        for frame in frames:
            factor_frames[side].append(frame)
            factor_defaults[side].update(dict.fromkeys(frame.columns, 0.0))

    prior_row = {
        "count": 0.0,
        "pos_rate": positive_prior,
        "mean_rating": rating_prior,
        "rating_std": math.sqrt(variance_prior),
    }
    user_defaults: dict[str, Any] = {
        "age": float(user_profiles["age"].median()) if len(user_profiles) else math.nan,
        "gender": UNKNOWN_CODE,
        "occupation": UNKNOWN_CODE,
        "zip_prefix": UNKNOWN_CODE,
        **{f"user_{k}": v for k, v in prior_row.items()},
        **dict.fromkeys(TASTE_COLUMNS, positive_prior),
        **dict.fromkeys(segments.columns, 0.0),
        **factor_defaults[0],
    }
    item_defaults: dict[str, Any] = {
        "release_year": math.nan,
        **dict.fromkeys(GENRE_COLUMNS, 0),
        **{f"item_{k}": v for k, v in prior_row.items()},
        **dict.fromkeys(segment_rates.columns, positive_prior),
        **factor_defaults[1],
    }

    user_table = _with_history(
        user_profiles, USER_ID, [user_stats, taste, segments, *factor_frames[0]], user_defaults
    )
    item_table = _with_history(
        item_profiles, ITEM_ID, [item_stats, segment_rates, *factor_frames[1]], item_defaults
    )
    for table, column in ((user_table, "user_count"), (item_table, "item_count")):
        table[column] = np.log1p(table[column] * count_scale)
    defaults = {
        "user": {k: _json_value(v) for k, v in user_defaults.items()},
        "item": {k: _json_value(v) for k, v in item_defaults.items()},
    }
    return user_table, item_table, defaults


def _with_history(
    profiles: pd.DataFrame, key: str, statistics: list[pd.DataFrame], defaults: Mapping[str, Any]
) -> pd.DataFrame:
    """Profiles of every known id joined with its statistics; ids without history get the prior values.

    Ids seen in the history but absent from the profiles are kept too, with default profile values.
    """
    ids = pd.Index(profiles[key]).union(pd.Index(statistics[0].index)).sort_values()
    table = pd.concat([profiles.set_index(key).reindex(ids), *(stat.reindex(ids) for stat in statistics)], axis=1)
    table = table.fillna({c: v for c, v in defaults.items() if c in table.columns and not _is_nan(v)})
    # Reindexing made integer codes float; give them back their integer type.
    integer = [c for c, v in defaults.items() if c in table.columns and isinstance(v, int | np.integer)]
    table = table.astype(dict.fromkeys(integer, np.int64)).copy()  # the copy consolidates the column blocks
    table.index.name = key
    return table.reset_index()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _json_value(value: Any) -> Any:
    """A plain JSON value: NaN becomes null (``assemble_features`` reads null back as NaN)."""
    if _is_nan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def build_features(
    splits: Mapping[str, pd.DataFrame],
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    seed: int,
    config: FeatureConfig | None = None,
) -> FeatureTables:
    """Append FEATURE_COLUMNS to every split and build the lookup tables (see the module docstring for leakage)."""
    config = config or FeatureConfig()
    if "train" not in splits:
        raise ValueError(f"splits must include 'train' (history comes from it); got {sorted(splits)}")
    train = splits["train"]
    required = [USER_ID, ITEM_ID, RATING, LABEL]
    for name, frame in splits.items():
        missing = [c for c in (required if name == "train" else [USER_ID, ITEM_ID]) if c not in frame.columns]
        if missing:
            raise ValueError(f"split {name!r} lacks columns {missing}")
    if len(train) < config.n_folds:
        raise ValueError(f"the training split has {len(train)} rows, fewer than n_folds={config.n_folds}")

    user_profiles = encode_users(users)
    item_profiles = encode_items(items)
    user_table, item_table, defaults = history_tables(
        train, user_profiles, item_profiles, config=config, seed=seed
    )

    out: dict[str, pd.DataFrame] = {}
    for name, frame in splits.items():
        if name == "train":
            folds = fold_assignment(
                train, n_folds=config.n_folds, cold_user_share=_cold_user_share(splits, config), seed=seed
            )
            features = _out_of_fold(train, folds, user_profiles, item_profiles, seed=seed, config=config)
        else:
            features = assemble_features(frame[[USER_ID, ITEM_ID]], user_table, item_table, defaults)
        base = frame.drop(columns=[c for c in FEATURE_COLUMNS if c in frame.columns])
        # Positional concatenation: a caller's index may repeat labels.
        joined = pd.concat(
            [base.reset_index(drop=True), features[list(FEATURE_COLUMNS)].reset_index(drop=True)], axis=1
        )
        joined.index = frame.index
        out[name] = joined
    log.info(
        "features: %d columns; %d users, %d items in the lookup tables; %d-fold out-of-fold training rows",
        len(FEATURE_COLUMNS),
        len(user_table),
        len(item_table),
        config.n_folds,
    )
    return FeatureTables(splits=out, user_features=user_table, item_features=item_table, defaults=defaults)


def _cold_user_share(splits: Mapping[str, pd.DataFrame], config: FeatureConfig) -> float:
    """The configured cold-user share, or the share of validation rows whose user has no training rows."""
    if config.cold_user_share is not None:
        return config.cold_user_share
    reference = splits.get("val")
    if reference is None or reference.empty:
        return 0.0
    share = float((~reference[USER_ID].isin(splits["train"][USER_ID])).mean())
    return min(share, MAX_COLD_USER_SHARE)


# Some users always keep their history, so the history features still have rows to learn from.
MAX_COLD_USER_SHARE = 0.9


def shuffled_folds(n_rows: int, *, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of each of ``n_rows`` rows, exactly as scikit-learn's ``KFold(n_folds, shuffle=True,
    random_state=seed)`` assigns them (the rows shuffled by ``RandomState(seed)``, then cut into consecutive folds
    whose sizes differ by at most one, the larger first).

    Written out so that prepare does not import scikit-learn (over a second at process start) for one shuffle;
    tests/abtest/features/test_build.py checks it against ``KFold``.
    """
    if not 2 <= n_folds <= n_rows:
        raise ValueError(f"n_folds must be in [2, n_rows={n_rows}], got {n_folds}")
    order = np.arange(n_rows)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, n_rows // n_folds, dtype=np.int64)
    sizes[: n_rows % n_folds] += 1
    folds = np.empty(n_rows, dtype=np.int64)
    folds[order] = np.repeat(np.arange(n_folds), sizes)
    return folds


def fold_assignment(train: pd.DataFrame, *, n_folds: int, cold_user_share: float, seed: int) -> np.ndarray:
    """Fold number of every training row: seeded random rows, except whole users for the cold-user share.

    A user whose rows all sit in one fold has no history in that fold's features: the training rows then look
    like the val/test rows of users who arrive after the training period.
    """
    folds = shuffled_folds(len(train), n_folds=n_folds, seed=seed)
    if cold_user_share <= 0:
        return folds
    users = train[USER_ID].to_numpy()
    ids, counts = np.unique(users, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_cold = int(np.searchsorted(np.cumsum(counts[order]), cold_user_share * len(train)))
    cold_ids = ids[order[:n_cold]]
    cold_fold = pd.Series(rng.integers(0, n_folds, len(cold_ids)), index=cold_ids)
    is_cold = np.isin(users, cold_ids)
    folds[is_cold] = cold_fold.reindex(users[is_cold]).to_numpy()
    return folds


def _out_of_fold(
    train: pd.DataFrame,
    folds: np.ndarray,
    user_profiles: pd.DataFrame,
    item_profiles: pd.DataFrame,
    *,
    seed: int,
    config: FeatureConfig,
) -> pd.DataFrame:
    """Features of each training row computed from the other folds only."""
    parts, positions = [], []
    scale = config.n_folds / (config.n_folds - 1)
    for fold in range(config.n_folds):
        apply_rows = np.flatnonzero(folds == fold)
        if not len(apply_rows):
            continue
        user_table, item_table, defaults = history_tables(
            train.iloc[folds != fold], user_profiles, item_profiles, config=config, seed=seed, count_scale=scale
        )
        parts.append(
            assemble_features(train.iloc[apply_rows][[USER_ID, ITEM_ID]], user_table, item_table, defaults)
        )
        positions.append(apply_rows)
    features = pd.concat(parts).iloc[np.argsort(np.concatenate(positions), kind="stable")]
    features.index = train.index
    return features
