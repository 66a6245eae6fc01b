"""The Spark engine: the same records give exactly the DuckDB engine's reduction, and break the same rules.

Every test runs on a real local Spark session (the ``spark`` fixture); the DuckDB engine over the same files is
the reference (itself checked against pandas in test_reduce.py).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ab_router import records
from abtest.experiment.ingest.layout import arrow_schema
from abtest.experiment.ingest.read import RULE_EVENT, RULE_JSON, RULE_MISSING, RULE_TYPE, RecordError, open_records
from abtest.experiment.ingest.reduce import ExperimentData, reduce_experiment
from abtest.experiment.ingest.spark import open_spark_records
from tests.abtest.experiment.ingest.test_read import rewrite_line
from tests.abtest.experiment.ingest.test_reduce import assert_same_data, experiment_of
from tests.fixtures.experiment_records import ExperimentRecords, RecordsSpec, write_experiment_records

pytestmark = pytest.mark.spark


def on_duckdb(location: Path | str, spec: RecordsSpec, **experiment) -> ExperimentData:
    with open_records(location) as store:
        return reduce_experiment(store, experiment_of(spec, **experiment))


def on_spark(spark, location: Path | str, spec: RecordsSpec, tmp_path: Path, **experiment) -> ExperimentData:
    with open_spark_records(location, spark=spark, workdir=tmp_path) as store:
        return reduce_experiment(store, experiment_of(spec, **experiment))


def as_parquet(written: ExperimentRecords, target: Path, *, naive_time: bool = False) -> Path:
    """The records rewritten as one Parquet file per table in the canonical schema (via the DuckDB reader)."""
    with open_records(written.directory) as store:
        for record_type in records.RECORD_TYPES.values():
            table = store.connection.sql(f"SELECT * FROM {record_type.sql_table}").to_arrow_table()
            table = table.cast(arrow_schema(record_type))
            if naive_time:
                times = table[records.EVENT_TIME].cast(pa.timestamp("us"))
                table = table.set_column(
                    table.schema.get_field_index(records.EVENT_TIME), records.EVENT_TIME, times
                )
            (target / record_type.table).mkdir(parents=True)
            pq.write_table(table, target / record_type.table / "part-0.parquet")
    return target


def test_every_defect_gives_the_duckdb_reduction_exactly(
    spark, defect_records: ExperimentRecords, tmp_path: Path
) -> None:
    spec = defect_records.spec
    got = on_spark(spark, defect_records.directory, spec, tmp_path)
    assert_same_data(got, on_duckdb(defect_records.directory, spec))
    # not vacuous: the defects are there to be counted
    assert got.health_counts()["users_in_both_arms"] == spec.both_arms_users
    assert got.health_counts()["duplicate_decisions"] == spec.duplicate_decisions


def test_torn_tail_is_skipped_and_reported_and_lift_is_read(spark, tmp_path: Path) -> None:
    spec = RecordsSpec(n_users=120, days=3, ctr_a=0.05, ctr_b=0.15, torn_tail=True, seed=5)
    written = write_experiment_records(tmp_path / "records", spec)
    got = on_spark(spark, written.directory, spec, tmp_path)
    expected = on_duckdb(written.directory, spec)
    assert_same_data(got, expected)
    assert [tail.path for tail in got.torn_tails] == [written.torn_file]
    assert got.health_counts()["torn_tails"] == 1
    by_arm = got.user_days.groupby("policy")[["clicks", "impressions"]].sum()
    ctr = by_arm["clicks"] / by_arm["impressions"]
    assert ctr["B"] > 2 * ctr["A"]


def test_parquet_files_and_catalog_tables_give_the_json_lines_reduction(
    spark, defect_records: ExperimentRecords, tmp_path: Path
) -> None:
    spec = defect_records.spec
    expected = on_duckdb(defect_records.directory, spec)
    parquet = as_parquet(defect_records, tmp_path / "parquet")
    assert_same_data(on_spark(spark, parquet, spec, tmp_path), expected)
    for record_type in records.RECORD_TYPES.values():
        spark.read.parquet(str(parquet / record_type.table)).createOrReplaceGlobalTempView(record_type.sql_table)
    try:
        assert_same_data(on_spark(spark, "tables:global_temp", spec, tmp_path), expected)
    finally:
        for record_type in records.RECORD_TYPES.values():
            spark.catalog.dropGlobalTempView(record_type.sql_table)


@pytest.mark.parametrize(
    ("table", "rule", "expected"),
    [
        ("decisions", "wrong_type", RULE_TYPE),
        ("impressions", "missing_field", RULE_MISSING),
        ("outcomes", "unknown_event", RULE_EVENT),
        ("decisions", "bad_json", RULE_JSON),
    ],
)
def test_malformed_line_is_named_by_file_line_and_rule(
    spark, tmp_path: Path, table: str, rule: str, expected: str
) -> None:
    written = write_experiment_records(tmp_path / "r", RecordsSpec(n_users=30, days=2, malformed=((table, rule),)))
    (bad,) = written.malformed
    with pytest.raises(RecordError) as raised:
        open_spark_records(written.directory, spark=spark, workdir=tmp_path)
    assert (raised.value.where, raised.value.rule) == (f"{bad.path}, line {bad.line}", expected)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", 42),  # Spark's JSON parser would read it as the string "42"
        ("user_id", "12"),
        ("user_id", 1.5),
        ("cold_user", "true"),
        ("event_time", "2026-11-02T10:00:00"),  # no offset
        ("event_time", 1_700_000_000),  # Spark would read a number as seconds since 1970
    ],
)
def test_every_kind_is_checked_strictly(spark, tmp_path: Path, field: str, value: object) -> None:
    written = write_experiment_records(tmp_path / "r", RecordsSpec(n_users=30, days=2, seed=2))
    path = written.files("decisions")[1]
    rewrite_line(path, 3, lambda record: {**record, field: value})
    with pytest.raises(RecordError) as raised:
        open_spark_records(written.directory, spark=spark, workdir=tmp_path)
    assert (raised.value.where, raised.value.rule) == (f"{path}, line 3", RULE_TYPE)
    assert repr(field) in raised.value.detail


def test_parquet_schema_and_values_are_checked_by_file(
    spark, defect_records: ExperimentRecords, tmp_path: Path
) -> None:
    naive = as_parquet(defect_records, tmp_path / "naive", naive_time=True)
    with pytest.raises(RecordError) as raised:
        open_spark_records(naive, spark=spark, workdir=tmp_path)
    assert raised.value.where == str(naive / "decisions" / "part-0.parquet")
    assert raised.value.rule == RULE_TYPE and "event_time" in raised.value.detail

    nulls = as_parquet(defect_records, tmp_path / "nulls")
    path = nulls / "impressions" / "part-0.parquet"
    table = pq.read_table(path)
    user = table["user_id"].to_pylist()
    user[7] = None
    pq.write_table(table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(user)), path)
    with pytest.raises(RecordError) as raised:
        open_spark_records(nulls, spark=spark, workdir=tmp_path)
    assert raised.value.rule == RULE_MISSING and raised.value.where.startswith(f"{path}, row with event_id=")


def test_a_sql_database_is_refused_with_the_engine_that_reads_it(spark, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use engine=duckdb"):
        open_spark_records(f"sqlite:///{tmp_path / 'records.db'}", spark=spark)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_spark_records(tmp_path / "missing", spark=spark)


def test_duckdb_parquet_writer_round_trip_is_canonical(defect_records: ExperimentRecords, tmp_path: Path) -> None:
    # The helper above writes what layout.arrow_schema says (the schema Spark then reads).
    target = as_parquet(defect_records, tmp_path / "p")
    for record_type in records.RECORD_TYPES.values():
        assert pq.read_schema(target / record_type.table / "part-0.parquet").equals(arrow_schema(record_type))
    rows = duckdb.sql(f"SELECT COUNT(*) FROM '{target / 'decisions' / 'part-0.parquet'}'").fetchall()
    assert rows[0][0] == defect_records.rows["decisions"]


def test_spark_written_parquet_with_its_default_int96_times_is_read(
    spark, defect_records: ExperimentRecords, tmp_path: Path
) -> None:
    # Spark's default Parquet timestamp encoding is INT96, an instant that pyarrow reads as naive: both readers
    # must take it as UTC (layout.parquet_schema), and Spark's own write leaves _SUCCESS / _temporary aside.
    spec = defect_records.spec
    canonical = as_parquet(defect_records, tmp_path / "canonical")
    written = tmp_path / "spark-written"
    spark.conf.set("spark.sql.parquet.outputTimestampType", "INT96")
    try:
        for record_type in records.RECORD_TYPES.values():
            spark.read.parquet(str(canonical / record_type.table)).write.parquet(str(written / record_type.table))
    finally:
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    (written / "decisions" / "_temporary" / "0").mkdir(parents=True)
    (written / "decisions" / "_temporary" / "0" / "part-9.parquet").write_bytes(b"half a file")
    first = next((written / "decisions").glob("part-*.parquet"))
    assert pq.ParquetFile(first).schema.column(0).physical_type == "INT96"
    expected = on_duckdb(defect_records.directory, spec)
    assert_same_data(on_duckdb(written, spec), expected)
    assert_same_data(on_spark(spark, written, spec, tmp_path), expected)
