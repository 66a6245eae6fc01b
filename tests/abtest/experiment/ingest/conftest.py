"""Fixtures of the ingest tests: written record directories and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from team.postgres import find_postgres_bindir, throwaway_postgres
from tests.fixtures.experiment_records import ExperimentRecords, RecordsSpec, write_experiment_records

# Every defect the generator plants, at once: what the database comparison runs on.
ALL_DEFECTS = RecordsSpec(
    n_users=80,
    days=4,
    both_arms_users=2,
    duplicate_decisions=3,
    unshown_requests=2,
    orphan_impressions=2,
    orphan_outcomes=2,
    outside_window_requests=2,
    other_version_requests=2,
    seed=3,
)


@pytest.fixture
def clean_records(tmp_path: Path) -> ExperimentRecords:
    """A small experiment without defects: 80 users over 4 days."""
    return write_experiment_records(tmp_path / "records", RecordsSpec(n_users=80, days=4, seed=1))


@pytest.fixture(scope="module")
def defect_records(tmp_path_factory: pytest.TempPathFactory) -> ExperimentRecords:
    """:data:`ALL_DEFECTS` written once per module."""
    return write_experiment_records(tmp_path_factory.mktemp("defects") / "records", ALL_DEFECTS)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database on a throwaway cluster; skipped without PostgreSQL unless ABTEST_REQUIRE_POSTGRES=1."""
    if find_postgres_bindir() is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("ABTEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message}, and ABTEST_REQUIRE_POSTGRES=1 says they must be here")
        pytest.skip(message)
    with throwaway_postgres(databases=("abtest_ingest",)) as cluster:
        yield cluster.uri("abtest_ingest").replace("postgresql://", "postgresql+psycopg://", 1)
