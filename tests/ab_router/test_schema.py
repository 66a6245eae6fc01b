"""ab_router.schema: the declared feature facts the trainers rely on."""

from __future__ import annotations

import pytest

from ab_router import schema


def test_monotone_constraints_follow_the_feature_order_and_the_declared_signs() -> None:
    directions = dict(zip(schema.FEATURE_COLUMNS, schema.MONOTONE_CONSTRAINTS, strict=True))
    assert len(schema.MONOTONE_CONSTRAINTS) == len(schema.FEATURE_COLUMNS)
    assert directions["mf_score"] == directions["liked_similarity"] == directions["item_pos_rate"] == 1
    assert directions["disliked_similarity"] == -1
    # Profile codes, counts and spreads have no sign their meaning fixes: left free.
    assert directions["occupation"] == directions["user_count"] == directions["item_rating_std"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "double", "monotone": 2}, "monotone must be -1, 0 or 1, got 2"),
        ({"dtype": "long", "categorical": True, "monotone": 1}, "only numeric"),
    ],
)
def test_a_feature_with_an_impossible_direction_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema.Feature("x", source="user", **kwargs)
