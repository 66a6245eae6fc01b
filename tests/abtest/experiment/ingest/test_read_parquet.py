"""Parquet records: the same reduction as JSON Lines, read in place (a view), each layout rule named by file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ab_router import records
from abtest.experiment.ingest import layout
from abtest.experiment.ingest.read import RULE_EVENT, RULE_MISSING, RULE_TYPE, RecordError, open_records
from abtest.experiment.ingest.reduce import read_experiment, reduce_experiment
from tests.abtest.experiment.ingest.conftest import ALL_DEFECTS
from tests.fixtures.experiment_records import (
    ExperimentRecords,
    RecordsSpec,
    assert_same_reduction,
    experiment_for,
    write_experiment_records,
)

SMALL = RecordsSpec(n_users=60, days=3, seed=2)


@pytest.fixture
def parquet_records(tmp_path: Path) -> ExperimentRecords:
    """:data:`SMALL` written as Parquet."""
    return write_experiment_records(tmp_path / "parquet", replace(SMALL, file_format="parquet"))


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace a Parquet file by ``change(its table)``, written with the changed table's own schema."""
    table = change(pq.read_table(path))
    pq.write_table(table, path)


def replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, pa.field(name, values.type, nullable=True), values)


def with_null_at(table: pa.Table, name: str, row: int) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = None
    return replace_column(table, name, pa.array(values, type=table.schema.field(name).type))


def counts(location: Path, **options) -> dict[str, int]:
    with open_records(location, **options) as store:
        return {
            table: int(store.query(f"SELECT count(*) AS n FROM {t.sql_table}")["n"].iloc[0])
            for table, t in records.RECORD_TYPES.items()
        }


def test_parquet_and_jsonl_of_the_same_records_reduce_identically(tmp_path: Path) -> None:
    jsonl = write_experiment_records(tmp_path / "jsonl", ALL_DEFECTS)
    parquet = write_experiment_records(tmp_path / "parquet", replace(ALL_DEFECTS, file_format="parquet"))
    assert parquet.rows == jsonl.rows
    assert parquet.planted == jsonl.planted
    experiment = experiment_for(ALL_DEFECTS)
    from_parquet = read_experiment(parquet.directory, experiment)
    assert_same_reduction(from_parquet, read_experiment(jsonl.directory, experiment))
    assert from_parquet.health["duplicate_decisions"].count == ALL_DEFECTS.duplicate_decisions
    assert from_parquet.health["users_in_both_arms"].count == ALL_DEFECTS.both_arms_users


def test_a_parquet_table_is_a_typed_view_over_its_files_not_a_copy(parquet_records: ExperimentRecords) -> None:
    with open_records(parquet_records.directory) as store:
        kinds = store.query("SELECT table_name, table_type FROM information_schema.tables ORDER BY 1")
        types = store.query("SELECT typeof(user_id) AS u, typeof(event_time) AS t, typeof(forced) AS f, "
                            "typeof(split) AS s FROM abtest_decisions LIMIT 1").iloc[0]  # fmt: skip
        assert {t: list(p) for t, p in store.files.items()} == {
            t: parquet_records.files(t) for t in records.RECORD_TYPES
        }
    assert dict(zip(kinds["table_name"], kinds["table_type"], strict=True)) == {
        t.sql_table: "VIEW" for t in records.RECORD_TYPES.values()
    }
    assert tuple(types) == ("BIGINT", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "DOUBLE")
    assert counts(parquet_records.directory) == parquet_records.rows


def test_generator_parquet_files_have_the_canonical_schema(parquet_records: ExperimentRecords) -> None:
    for table, record_type in records.RECORD_TYPES.items():
        paths = parquet_records.files(table)
        assert [p.name for p in paths] == ["generator-0.parquet", "generator-1.parquet"]
        for path in paths:
            assert pq.read_schema(path).equals(layout.arrow_schema(record_type))


def test_a_table_of_jsonl_and_parquet_files_is_their_union(tmp_path: Path) -> None:
    jsonl = write_experiment_records(tmp_path / "jsonl", SMALL)
    parquet = write_experiment_records(tmp_path / "parquet", replace(SMALL, file_format="parquet"))
    mixed = tmp_path / "mixed"
    for table in records.RECORD_TYPES:  # writer 0 as JSON Lines, writer 1 as Parquet: the same records
        (mixed / table).mkdir(parents=True)
        shutil.copy(jsonl.files(table)[0], mixed / table)
        shutil.copy(parquet.files(table)[1], mixed / table)
    with open_records(mixed) as store:
        assert {t: [p.name for p in paths] for t, paths in store.files.items()} == {
            t: ["generator-0.jsonl", "generator-1.parquet"] for t in records.RECORD_TYPES
        }
        mixed_data = reduce_experiment(store, experiment_for(SMALL))
    assert_same_reduction(mixed_data, read_experiment(jsonl.directory, experiment_for(SMALL)))


def test_chunked_parquet_generator_numbers_users_requests_and_events_once(tmp_path: Path) -> None:
    spec = replace(ALL_DEFECTS, file_format="parquet", drop_b_users=0.2)
    written = write_experiment_records(tmp_path / "chunked", spec, chunk_decisions=400)  # 6 chunks of 13-14 users
    with open_records(written.directory) as store:
        decisions = store.query("SELECT count(DISTINCT user_id) AS users, max(user_id) AS top, "
                                "count(DISTINCT (request_id, \"row\")) AS keys, count(*) AS n "
                                "FROM abtest_decisions").iloc[0]  # fmt: skip
        distinct = "SELECT count(DISTINCT event_id) FROM abtest_{}"
        events = store.query(f"SELECT ({distinct.format('impressions')}) AS shown, "
                             f"({distinct.format('outcomes')}) AS clicked").iloc[0]  # fmt: skip
        data = reduce_experiment(store, experiment_for(spec))
    dropped = len(written.planted["dropped_b_users"])
    assert decisions["top"] <= spec.n_users and decisions["users"] <= spec.n_users - dropped
    assert decisions["n"] - decisions["keys"] == spec.duplicate_decisions
    assert (events["shown"], events["clicked"]) == (
        written.rows["impressions"] - spec.duplicate_impressions,
        written.rows["outcomes"] - spec.duplicate_outcomes,
    )
    # The defects are planted once, and the reduction finds what the JSON Lines of the same spec would plant.
    assert data.health["impressions_without_decision"].count == spec.orphan_impressions
    assert data.health["outcomes_without_impression"].count == spec.orphan_outcomes
    assert data.health["requests_never_shown"].count == spec.unshown_requests
    assert data.health["users_in_both_arms"].count == spec.both_arms_users
    assert not set(written.planted["dropped_b_users"]) & set(data.user_days["user_id"])


def test_parquet_spec_refuses_jsonl_defects(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON Lines defects"):
        write_experiment_records(tmp_path / "r", replace(SMALL, file_format="parquet", torn_tail=True))
    with pytest.raises(ValueError, match="file_format must be one of"):
        write_experiment_records(tmp_path / "r", replace(SMALL, file_format="csv"))


@pytest.mark.parametrize(
    ("table", "change", "rule", "detail"),
    [
        (
            "decisions",
            lambda t: replace_column(t, "event_time", pc.cast(t.column("event_time"), pa.timestamp("us"))),
            RULE_TYPE,
            "column 'event_time' must hold a timestamp, its type is timestamp[us]",
        ),
        (
            "impressions",
            lambda t: replace_column(t, "user_id", pc.cast(t.column("user_id"), pa.string())),
            RULE_TYPE,
            "column 'user_id' must hold a long, its type is string",
        ),
        (
            "decisions",
            lambda t: replace_column(t, "item_id", pc.cast(t.column("item_id"), pa.uint64())),
            RULE_TYPE,
            "column 'item_id' must hold a long, its type is uint64",
        ),
        (
            "decisions",
            lambda t: replace_column(t, "forced", pc.cast(t.column("forced"), pa.int8())),
            RULE_TYPE,
            "column 'forced' must hold a boolean, its type is int8",
        ),
        ("outcomes", lambda t: t.drop_columns(["item_id"]), RULE_MISSING, "column 'item_id' (long) is absent"),
    ],
    ids=["naive_timestamp", "string_in_long", "uint64_in_long", "int_in_boolean", "missing_column"],
)
def test_a_column_that_breaks_a_schema_rule_is_named_with_its_file(
    parquet_records: ExperimentRecords, table: str, change, rule: str, detail: str
) -> None:
    path = parquet_records.files(table)[1]
    rewrite(path, change)
    with pytest.raises(RecordError) as raised:
        open_records(parquet_records.directory)
    assert (raised.value.where, raised.value.rule) == (str(path), rule)
    assert detail in raised.value.detail


def test_a_null_required_value_is_named_by_file_and_row_key(parquet_records: ExperimentRecords) -> None:
    path = parquet_records.files("impressions")[0]
    event_id = pq.read_table(path).column("event_id")[5].as_py()
    rewrite(path, lambda t: with_null_at(t, "item_id", 5))
    with pytest.raises(RecordError) as raised:
        open_records(parquet_records.directory)
    assert raised.value.where == f"{path}, row with event_id={event_id!r}"
    assert raised.value.rule == RULE_MISSING
    assert "column 'item_id' (long) is null" in raised.value.detail


def test_an_undeclared_event_is_named_by_file_and_row_key_and_a_declared_one_read(
    parquet_records: ExperimentRecords,
) -> None:
    path = parquet_records.files("outcomes")[0]
    table = pq.read_table(path)
    events = ["purchase" if index == 1 else name for index, name in enumerate(table.column("event").to_pylist())]
    rewrite(path, lambda t: replace_column(t, "event", pa.array(events)))
    with pytest.raises(RecordError) as raised:
        open_records(parquet_records.directory)
    assert raised.value.where == f"{path}, row with event_id={table.column('event_id')[1].as_py()!r}"
    assert raised.value.rule == RULE_EVENT
    assert "'purchase'" in raised.value.detail
    with open_records(parquet_records.directory, events=("purchase",)) as store:
        bought = store.query("SELECT count(*) AS n FROM abtest_outcomes WHERE event = 'purchase'")["n"].iloc[0]
    assert bought == 1


def test_a_null_double_and_an_absent_optional_column_are_read_as_null(parquet_records: ExperimentRecords) -> None:
    rewrite(parquet_records.files("decisions")[0], lambda t: with_null_at(t, "score", 0))
    for path in parquet_records.files("outcomes"):
        rewrite(path, lambda t: t.drop_columns(["value"]))
    with open_records(parquet_records.directory) as store:
        scores = store.query("SELECT count(*) AS n FROM abtest_decisions WHERE score IS NULL")["n"].iloc[0]
        values = store.query("SELECT typeof(value) AS t, count(value) AS n FROM abtest_outcomes GROUP BY 1")
    assert scores == 1
    assert values.to_dict("records") == [{"t": "DOUBLE", "n": 0}]


def test_other_accepted_types_are_cast_to_the_records_types(tmp_path: Path) -> None:
    """Narrower integers, integers in a double, another time zone and unit, large strings: the same records."""
    jsonl = write_experiment_records(tmp_path / "jsonl", SMALL)
    parquet = write_experiment_records(tmp_path / "parquet", replace(SMALL, file_format="parquet"))
    for path in parquet.files("decisions"):
        rewrite(
            path,
            lambda t: (
                t.set_column(8, "user_id", pc.cast(t.column("user_id"), pa.uint32()))
                .set_column(9, "item_id", pc.cast(t.column("item_id"), pa.int32()))
                .set_column(12, "bucket", pc.cast(t.column("bucket"), pa.int16()))
                .set_column(1, "request_id", pc.cast(t.column("request_id"), pa.large_string()))
                .set_column(0, "event_time", pc.cast(t.column("event_time"), pa.timestamp("ns", tz="Asia/Tokyo")))
            ),
        )
    for path in parquet.files("outcomes"):
        rewrite(path, lambda t: t.set_column(6, "value", pc.cast(t.column("value"), pa.int64())))
    with open_records(parquet.directory) as store:
        types = store.query("SELECT typeof(user_id) AS u, typeof(request_id) AS r, typeof(event_time) AS t "
                            "FROM abtest_decisions LIMIT 1").iloc[0]  # fmt: skip
        data = reduce_experiment(store, experiment_for(SMALL))
    assert tuple(types) == ("BIGINT", "VARCHAR", "TIMESTAMP WITH TIME ZONE")
    assert_same_reduction(data, read_experiment(jsonl.directory, experiment_for(SMALL)))


def test_files_in_partition_folders_are_read_without_partition_columns(parquet_records: ExperimentRecords) -> None:
    folder = parquet_records.directory / "impressions"
    for index, path in enumerate(parquet_records.files("impressions")):
        (folder / f"day={index}").mkdir()
        path.rename(folder / f"day={index}" / f"part-{index}.snappy.parquet")
    with open_records(parquet_records.directory) as store:
        assert [p.relative_to(folder).as_posix() for p in store.files["impressions"]] == [
            "day=0/part-0.snappy.parquet",
            "day=1/part-1.snappy.parquet",
        ]
        columns = store.query("SELECT * FROM abtest_impressions LIMIT 1").columns.tolist()
    assert columns == list(records.IMPRESSIONS.columns)
    assert counts(parquet_records.directory) == parquet_records.rows


def test_a_file_that_is_not_parquet_is_named(parquet_records: ExperimentRecords) -> None:
    path = parquet_records.directory / "outcomes" / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(RecordError) as raised:
        open_records(parquet_records.directory)
    assert (raised.value.where, raised.value.rule) == (str(path), "unreadable")


def test_duckdb_memory_limit_comes_from_the_environment_and_is_checked(monkeypatch) -> None:
    from abtest.experiment.ingest.read import DUCKDB_MEMORY_LIMIT, MEMORY_LIMIT_ENV, duckdb_memory_limit

    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    assert duckdb_memory_limit() == DUCKDB_MEMORY_LIMIT == "1GB"
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "6GB")
    assert duckdb_memory_limit() == "6GB"
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(
        ValueError, match=r"ABTEST_DUCKDB_MEMORY_LIMIT must be a size such as 4GB or 512MB, got 'lots'"
    ):
        duckdb_memory_limit()


def test_a_dictionary_of_strings_is_a_string_column() -> None:
    schema = layout.arrow_schema(records.DECISIONS)
    index = schema.get_field_index("arm")
    categorical = schema.set(index, pa.field("arm", pa.dictionary(pa.int8(), pa.string())))
    assert layout.schema_problem(categorical, records.DECISIONS) is None
    numbers = schema.set(index, pa.field("arm", pa.dictionary(pa.int8(), pa.int64())))
    assert layout.schema_problem(numbers, records.DECISIONS) == (
        "wrong type",
        "decisions column 'arm' must hold a string, its type is dictionary<values=int64, indices=int8, ordered=0>",
    )
