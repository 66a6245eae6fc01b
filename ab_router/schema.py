"""The feature schema, defined once.

`prepare` builds frames with exactly these columns, both trainers fit on them, both model signatures are
inferred from them, and the served router assembles them from its bundled lookup tables. Anything that needs
a column name or dtype imports it from here, so a renamed feature cannot silently drift between stages.

Categorical features are stored as non-negative integer codes (``-1`` = unknown): LightGBM handles integer
categoricals natively, scikit-learn one-hot encodes them, and MLflow signatures stay plain ``long``/``double``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ab_router.records import REQUEST_ID

USER_ID = "user_id"
ITEM_ID = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
LABEL = "label"

# What the served router returns per row, with each column's MLflow type: the router's signature, its empty
# answer, simulate and the tests all read this one mapping. request_id is the caller's (an optional input
# column) or one generated per request: what the application's impressions join the decision log on.
ROUTER_OUTPUT: dict[str, str] = {
    USER_ID: "long",
    ITEM_ID: "long",
    "policy": "string",
    "model_name": "string",
    "model_version": "string",
    "score": "double",
    "bucket": "long",
    "cold_user": "boolean",
    "cold_item": "boolean",
    REQUEST_ID: "string",
}
ROUTER_OUTPUT_COLUMNS: tuple[str, ...] = tuple(ROUTER_OUTPUT)

# The 19 genres of ML-100K's u.genre, in file order. ML-1M uses the same names minus "unknown".
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def genre_column(genre: str) -> str:
    """Column name of a genre flag; slugged so it is a safe identifier in every tool (LightGBM, JSON)."""
    slug = genre.lower().replace("'", "").replace("-", "_").replace(" ", "_")
    return f"genre_{slug}"


GENRE_COLUMNS: tuple[str, ...] = tuple(genre_column(g) for g in GENRES)

Dtype = Literal["long", "double"]
Source = Literal["user", "item", "pair"]
Direction = Literal[-1, 0, 1]


@dataclass(frozen=True)
class Feature:
    """One model input column: where it is looked up and how it is typed.

    ``monotone`` is the direction a higher value must move P(like) when every other feature is held fixed
    (+1 up, -1 down, 0 free). It is declared only for the collaborative scores whose meaning fixes the sign
    (a higher predicted rating, positive rate or similarity to liked items can never make a like less likely);
    policy B constrains its trees to it, which keeps the boosted model from fitting noise in the thin regions
    of those scores. Logistic regression needs no such constraint: its coefficients are one sign per feature.
    """

    name: str
    dtype: Dtype
    source: Source
    categorical: bool = False
    description: str = ""
    monotone: Direction = 0

    def __post_init__(self) -> None:
        if self.monotone not in (-1, 0, 1):
            raise ValueError(f"feature {self.name!r}: monotone must be -1, 0 or 1, got {self.monotone!r}")
        if self.monotone and (self.categorical or self.dtype != "double"):
            raise ValueError(f"feature {self.name!r}: only numeric (double) features can be monotone")


FEATURES: tuple[Feature, ...] = (
    # user profile
    Feature("age", "double", "user", description="age in years (ML-1M: lower bound of the age band)"),
    Feature("gender", "long", "user", categorical=True, description="code of M/F"),
    Feature("occupation", "long", "user", categorical=True, description="code of the occupation"),
    Feature("zip_prefix", "long", "user", categorical=True, description="code of the zip's 1st char"),
    # item profile
    Feature("release_year", "double", "item", description="release year, NaN when unknown"),
    *(Feature(c, "long", "item", description="genre flag") for c in GENRE_COLUMNS),
    # history, from the training split only (out-of-fold for training rows)
    Feature("user_count", "double", "user", description="log1p of the user's training ratings"),
    Feature("user_pos_rate", "double", "user", description="smoothed share of positives", monotone=1),
    Feature("user_mean_rating", "double", "user", description="smoothed mean rating", monotone=1),
    Feature("user_rating_std", "double", "user", description="smoothed standard deviation of the ratings"),
    Feature("item_count", "double", "item", description="log1p of the item's training ratings"),
    Feature("item_pos_rate", "double", "item", description="smoothed share of positives", monotone=1),
    Feature("item_mean_rating", "double", "item", description="smoothed mean rating", monotone=1),
    Feature("item_rating_std", "double", "item", description="smoothed standard deviation of the ratings"),
    Feature("user_genre_affinity", "double", "pair", description="user's genre taste · item genres", monotone=1),
    Feature(
        "mf_score", "double", "pair", description="rating predicted by biased matrix factorisation", monotone=1
    ),
    Feature(
        "mf_interaction",
        "double",
        "pair",
        description="mf_score's user × item term, without the biases",
        monotone=1,
    ),
    Feature(
        "liked_similarity",
        "double",
        "pair",
        description="item's latent similarity to the user's liked items",
        monotone=1,
    ),
    Feature(
        "disliked_similarity",
        "double",
        "pair",
        description="item's latent similarity to the user's disliked items",
        monotone=-1,
    ),
    Feature(
        "item_segment_pos_rate",
        "double",
        "pair",
        description="item's positive rate in the user's gender×age",
        monotone=1,
    ),
)

FEATURE_COLUMNS: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.categorical)
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    f.name for f in FEATURES if not f.categorical and f.name not in GENRE_COLUMNS
)
# Policy B's monotone constraint per feature, in FEATURE_COLUMNS order (LightGBM's `monotone_constraints`).
MONOTONE_CONSTRAINTS: tuple[int, ...] = tuple(f.monotone for f in FEATURES)

# Lookup-table columns that are not model inputs: the user's side of pair features. A pair feature is computed
# from a user vector and an item vector, because the served router only knows user_id and item_id.
TASTE_COLUMNS: tuple[str, ...] = tuple(f"taste_{c}" for c in GENRE_COLUMNS)  # smoothed positive rate per genre

_NUMPY_DTYPES: dict[str, type] = {"long": np.int64, "double": np.float64}


def feature_dtypes() -> dict[str, type]:
    """numpy dtype of every feature column, in schema order."""
    return {f.name: _NUMPY_DTYPES[f.dtype] for f in FEATURES}


def to_feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Select the feature columns in schema order with their exact dtypes.

    MLflow's in-process schema enforcement rejects an int64 column where the signature says double, so every
    caller passes its frame through here before it reaches a model.
    """
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"feature frame is missing columns {missing}; expected {list(FEATURE_COLUMNS)}")
    selected = frame.loc[:, list(FEATURE_COLUMNS)]
    dtypes = feature_dtypes()
    if all(selected[c].dtype == dtypes[c] for c in FEATURE_COLUMNS):
        return selected  # the router's hot path: already typed, skip pandas' NaN-checking casts
    return selected.astype(dtypes)


def feature_frame(matrix: np.ndarray) -> pd.DataFrame:
    """The feature frame of a float64 matrix whose columns are FEATURE_COLUMNS, typed as ``to_feature_frame`` does.

    The router scores such matrices (``ab_router.features.FeatureRows``); a policy that only reads frames (an
    unknown flavour, an uncompiled pipeline) gets this frame of them.
    """
    if matrix.ndim != 2 or matrix.shape[1] != len(FEATURE_COLUMNS):
        raise ValueError(
            f"a feature matrix needs one column per feature ({len(FEATURE_COLUMNS)}), got shape {matrix.shape}"
        )
    dtypes = feature_dtypes()
    return pd.DataFrame({c: matrix[:, k].astype(dtypes[c]) for k, c in enumerate(FEATURE_COLUMNS)})
