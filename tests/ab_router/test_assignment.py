"""The A/B assignment rule: sticky across processes, accurate splits, the seed's modulo rule, salt reshuffles."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import chisquare

from ab_router.assignment import (
    BUCKETS,
    AssignmentConfig,
    assign_arms,
    bucket_of,
    fnv1a_64,
    hash_buckets,
)
from abtest.config import PROJECT_DIR

SALT = "exp-salt"
USER_IDS = np.arange(1, 100_001, dtype=np.int64)


def test_fnv1a_matches_the_published_test_vectors() -> None:
    # From the FNV reference (http://www.isthe.com/chongo/src/fnv/test_fnv.c): "", "a", "foobar".
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_vectorised_buckets_equal_the_scalar_rule_on_the_decimal_string() -> None:
    ids = np.array([0, 1, 9, 10, 99, 100, 942, 943, 123_456_789, 2**62, -1, -1234, np.iinfo(np.int64).min])
    assert hash_buckets(ids, salt=SALT).tolist() == [bucket_of(int(i), salt=SALT) for i in ids]
    assert (
        bucket_of(42, salt=SALT)
        == ((fnv1a_64(b"exp-salt:42") >> 32) ^ (fnv1a_64(b"exp-salt:42") & 0xFFFFFFFF)) % BUCKETS
    )


def test_assignment_is_identical_in_another_process_with_another_hash_seed() -> None:
    ids = list(range(0, 5000, 7))
    code = (
        "import json, sys; from ab_router.assignment import AssignmentConfig, assign_arms; "
        "a = assign_arms(json.load(sys.stdin), AssignmentConfig(split=0.3, salt='exp-salt', assignment='hash')); "
        "print(json.dumps([a.policy.tolist(), a.bucket.tolist()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        check=True,
        timeout=60,
    )
    here = assign_arms(ids, AssignmentConfig(split=0.3, salt=SALT, assignment="hash"))
    assert json.loads(result.stdout) == [here.policy.tolist(), here.bucket.tolist()]


@pytest.mark.parametrize("split", [0.5, 0.2])
def test_share_of_users_in_b_matches_the_split(split: float) -> None:
    assigned = assign_arms(USER_IDS, AssignmentConfig(split=split, salt=SALT, assignment="hash"))
    n_b = int((assigned.policy == "B").sum())
    expected = [len(USER_IDS) * (1 - split), len(USER_IDS) * split]
    assert chisquare([len(USER_IDS) - n_b, n_b], expected).pvalue > 0.001
    assert abs(n_b / len(USER_IDS) - split) < 0.01


def test_buckets_are_uniform() -> None:
    counts = np.bincount(hash_buckets(USER_IDS, salt=SALT), minlength=BUCKETS)
    assert chisquare(counts).pvalue > 0.001


def test_modulo_mode_is_the_seed_rule() -> None:
    assigned = assign_arms(USER_IDS, AssignmentConfig(split=0.5, salt=SALT, assignment="modulo"))
    assert (assigned.policy == np.where(USER_IDS % 2 == 0, "A", "B")).all()
    assert (assigned.bucket == USER_IDS % 2).all()


def test_new_salt_reshuffles_users_independently() -> None:
    first = assign_arms(USER_IDS, AssignmentConfig(split=0.5, salt=SALT, assignment="hash"))
    second = assign_arms(USER_IDS, AssignmentConfig(split=0.5, salt=SALT + "-2", assignment="hash"))
    agreement = float((first.policy == second.policy).mean())
    # Independent fair coins agree half the time: 0.5 ± 5 standard errors.
    assert abs(agreement - 0.5) < 5 * np.sqrt(0.25 / len(USER_IDS))
    assert abs(np.corrcoef(first.bucket, second.bucket)[0, 1]) < 0.02


def test_raising_the_split_only_moves_users_from_a_to_b() -> None:
    small = assign_arms(USER_IDS, AssignmentConfig(split=0.2, salt=SALT, assignment="hash"))
    large = assign_arms(USER_IDS, AssignmentConfig(split=0.5, salt=SALT, assignment="hash"))
    assert (large.policy[small.policy == "B"] == "B").all()
    assert (small.bucket == large.bucket).all()


def test_split_edges_send_everyone_to_one_arm() -> None:
    assert set(assign_arms(USER_IDS[:1000], AssignmentConfig(0.0, SALT, "hash")).policy) == {"A"}
    assert set(assign_arms(USER_IDS[:1000], AssignmentConfig(1.0, SALT, "hash")).policy) == {"B"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": 1.5, "salt": SALT, "assignment": "hash"}, r"split .* must be a number in \[0, 1\], got 1.5"),
        ({"split": 0.5, "salt": "", "assignment": "hash"}, "salt must be a non-empty string"),
        ({"split": 0.5, "salt": SALT, "assignment": "random"}, r"assignment must be one of \['hash', 'modulo'\]"),
        ({"split": 0.3, "salt": SALT, "assignment": "modulo"}, "fixed 50/50 rule"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_rule(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AssignmentConfig(**kwargs)
