"""The output folder: refused when it holds files, written under a temporary sibling, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ab_router.schema import ROUTER_OUTPUT_COLUMNS
from abtest.scoring import OutputError
from abtest.scoring.output import OUTPUT_SCHEMA, staged_output


def test_the_output_schema_is_the_routers_columns_in_order() -> None:
    assert tuple(OUTPUT_SCHEMA.names) == ROUTER_OUTPUT_COLUMNS
    types = {field.name: str(field.type) for field in OUTPUT_SCHEMA}
    assert [types[c] for c in ("user_id", "score", "cold_user", "policy")] == ["int64", "double", "bool", "string"]


def test_a_finished_output_is_renamed_into_place_and_leaves_no_sibling(tmp_path: Path) -> None:
    destination = tmp_path / "scored"
    with staged_output(destination) as staging:
        assert not staging.exists() and staging.parent == tmp_path and staging.name.startswith(".scored.partial-")
        staging.mkdir()
        (staging / "part-00000.parquet").write_bytes(b"rows")
    assert [p.name for p in destination.iterdir()] == ["part-00000.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["scored"]


def test_an_existing_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "scored").mkdir()
    with staged_output(tmp_path / "scored") as staging:
        staging.mkdir()
        (staging / "part-00000.parquet").write_bytes(b"rows")
    assert (tmp_path / "scored" / "part-00000.parquet").read_bytes() == b"rows"


def test_a_failure_leaves_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="scoring broke"), staged_output(tmp_path / "scored") as staging:
        staging.mkdir()
        (staging / "part-00000.parquet").write_bytes(b"half")
        raise RuntimeError("scoring broke")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_files_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "scored").mkdir()
    (tmp_path / "scored" / "old.parquet").write_bytes(b"earlier backfill")
    refused = pytest.raises(OutputError, match=r"folder .*scored exists and is not empty")
    with refused, staged_output(tmp_path / "scored"):
        pytest.fail("the body must not run")
    assert (tmp_path / "scored" / "old.parquet").read_bytes() == b"earlier backfill"
