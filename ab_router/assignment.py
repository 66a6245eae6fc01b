"""Which arm a user sees: sticky, deterministic assignment of user ids to policy A or B.

The rule, so any other service can reproduce it exactly (no Python ``hash()``, which is salted per process):

    h      = FNV-1a 64-bit of the UTF-8 bytes of ``f"{salt}:{user_id}"`` (user_id in decimal, e.g. "exp-1:42")
    bucket = ((h >> 32) XOR (h & 0xFFFFFFFF)) mod 10_000
    arm    = "B" if bucket < round(split * 10_000) else "A"

Folding the high half into the low half matters: FNV-1a's multiply only carries upwards, so its low bits alone
are weakly mixed. The low buckets go to B, so raising ``split`` only moves users from A to B (a user already in B
stays there), which is what a ramp-up wants. A new salt gives an independent reshuffle (a new experiment).

``assignment="modulo"`` reproduces the seed project's rule instead: even ``user_id`` → A, odd → B, a fixed 50/50
split; its bucket is ``user_id mod 2``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ab_router.arms import CONTROL, TREATMENT

BUCKETS = 10_000
ASSIGNMENT_MODES: tuple[str, ...] = ("hash", "modulo")
Assignment = Literal["hash", "modulo"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK_64 = (1 << 64) - 1
_MAX_DECIMAL_DIGITS = 20  # 2**64 has 20 digits


@dataclass(frozen=True)
class AssignmentConfig:
    """How users are split: share of users sent to B, the experiment salt and the rule.

    No defaults here: the `router` entry point in MLproject holds them.
    """

    split: float
    salt: str
    assignment: Assignment

    def __post_init__(self) -> None:
        if self.assignment not in ASSIGNMENT_MODES:
            raise ValueError(f"assignment must be one of {list(ASSIGNMENT_MODES)}, got {self.assignment!r}")
        check_split(self.split)
        if not isinstance(self.salt, str) or not self.salt:
            raise ValueError(f"salt must be a non-empty string, got {self.salt!r}")
        if self.assignment == "modulo" and self.split != 0.5:
            raise ValueError(
                f"assignment='modulo' is a fixed 50/50 rule (user_id % 2); split must be 0.5, got {self.split}"
            )


def check_split(split: float) -> float:
    """Validate a share of users sent to B: a number in [0, 1]."""
    if isinstance(split, bool) or not isinstance(split, int | float) or not 0.0 <= float(split) <= 1.0:
        raise ValueError(f"split (share of users sent to B) must be a number in [0, 1], got {split!r}")
    return float(split)


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit of ``data``: the scalar reference the vectorised version is tested against."""
    state = _FNV_OFFSET
    for byte in data:
        state = ((state ^ byte) * _FNV_PRIME) & _MASK_64
    return state


def _fold(state: np.ndarray) -> np.ndarray:
    return (state >> np.uint64(32)) ^ (state & np.uint64(0xFFFFFFFF))


def hash_buckets(user_ids: Iterable[int] | np.ndarray, *, salt: str) -> np.ndarray:
    """Bucket in [0, 10_000) of every user id under ``salt``, vectorised (int64 array, same order)."""
    ids = np.asarray(user_ids, dtype=np.int64)
    prime = np.uint64(_FNV_PRIME)
    prefix = fnv1a_64(f"{salt}:".encode())
    state = np.full(ids.shape, prefix, dtype=np.uint64)

    negative = ids < 0
    # |id| without overflowing at int64's minimum: -(id + 1) + 1 computed in uint64.
    magnitude = np.where(negative, (-(ids + 1)).astype(np.uint64) + np.uint64(1), ids.astype(np.uint64))
    minus = (state ^ np.uint64(ord("-"))) * prime
    state = np.where(negative, minus, state)

    powers = [np.uint64(10**k) for k in range(_MAX_DECIMAL_DIGITS)]
    n_digits = np.ones(ids.shape, dtype=np.int64)
    for k in range(1, _MAX_DECIMAL_DIGITS):
        n_digits += magnitude >= powers[k]
    # Most significant digit first, as the decimal string is written; shorter numbers skip the leading positions.
    for k in range(int(n_digits.max(initial=1)) - 1, -1, -1):
        digit = (magnitude // powers[k]) % np.uint64(10)
        stepped = (state ^ (digit + np.uint64(ord("0")))) * prime
        state = np.where(n_digits > k, stepped, state)
    return (_fold(state) % np.uint64(BUCKETS)).astype(np.int64)


def bucket_of(user_id: int, *, salt: str) -> int:
    """Bucket of one user id, computed the slow, obvious way (documentation and cross-check of the rule)."""
    state = fnv1a_64(f"{salt}:{int(user_id)}".encode())
    return ((state >> 32) ^ (state & 0xFFFFFFFF)) % BUCKETS


@dataclass(frozen=True)
class Assigned:
    """Arms and buckets of a batch of users, aligned with the input order."""

    policy: np.ndarray  # "A" / "B" (numpy unicode array)
    bucket: np.ndarray  # int64


def assign_arms(user_ids: Iterable[int] | np.ndarray, config: AssignmentConfig) -> Assigned:
    """Assign every user id to arm A or B under ``config`` (see the module docstring for the rule)."""
    ids = np.asarray(user_ids, dtype=np.int64)
    if config.assignment == "modulo":
        bucket = np.mod(ids, 2)
        to_b = bucket == 1
    else:
        bucket = hash_buckets(ids, salt=config.salt)
        to_b = bucket < round(config.split * BUCKETS)
    return Assigned(policy=np.where(to_b, TREATMENT, CONTROL), bucket=bucket.astype(np.int64))
