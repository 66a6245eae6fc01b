"""The original GroupLens ML-100K (path in $ABTEST_ML100K_ZIP, set by .ci/run) against the parser and pypi.

Skipped when the variable is unset: MovieLens may not be redistributed, so the zip is never in the repo. The pypi
half fetches recbole's wheel once into the cache (abtest.config.CACHE_DIR) through the package index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from ab_router.schema import genre_column
from abtest.data.movielens import read_movielens
from abtest.data.sources import SourceUnavailableError, from_pypi
from abtest.data.split import split_interactions

pytestmark = pytest.mark.realdata

ZIP = os.environ.get("ABTEST_ML100K_ZIP", "")
needs_zip = pytest.mark.skipif(not ZIP or not Path(ZIP).is_file(), reason="ABTEST_ML100K_ZIP is not set")


@pytest.fixture(scope="module")
def original():
    return read_movielens(ZIP, dataset="ml-100k")


@needs_zip
def test_original_zip_parses_to_the_published_counts(original) -> None:
    ratings, users, items = original.interactions, original.users, original.items
    assert (len(ratings), len(users), len(items)) == (100_000, 943, 1_682)
    assert ratings["rating"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ratings.iloc[0].tolist() == [196, 242, 3, 881250949]  # u.data's first line
    assert users.iloc[0].tolist() == [1, 24, "M", "technician", "85711"]
    assert users["zip_code"].str.len().eq(5).all() and users["occupation"].nunique() == 21
    toy_story = items.iloc[0]
    assert (toy_story["title"], toy_story["release_year"]) == ("Toy Story (1995)", 1995.0)
    assert [g for g in ("Animation", "Children's", "Comedy") if toy_story[genre_column(g)] == 1] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert items.loc[items["item_id"] == 543, "title"].item() == "Misérables, Les (1995)"  # latin-1
    assert items["release_year"].isna().sum() == 1  # movie 267 "unknown"
    assert (items["release_year"].min(), items["release_year"].max()) == (1922.0, 1998.0)


@needs_zip
def test_pypi_conversion_equals_the_original(original) -> None:
    try:
        converted = from_pypi("ml-100k").tables
    except SourceUnavailableError as exc:  # no package index reachable: nothing to compare against
        pytest.skip(f"recbole's wheel is not available: {exc}")
    pd.testing.assert_frame_equal(converted.interactions, original.interactions)
    pd.testing.assert_frame_equal(converted.users, original.users)
    pd.testing.assert_frame_equal(converted.items, original.items)


@needs_zip
def test_split_modes_on_the_real_data(original) -> None:
    sizes = {}
    for mode in ("temporal", "random", "autoint"):
        splits = split_interactions(
            original.interactions, mode=mode, positive_threshold=4, val_frac=0.1, test_frac=0.1, seed=42
        )
        sizes[mode] = [len(splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes["temporal"]) == sum(sizes["random"]) == 100_000
    assert sizes["random"] == [80_000, 10_000, 10_000]
    assert sum(sizes["autoint"]) == 100_000 - 27_145  # the 3-star ratings are dropped
