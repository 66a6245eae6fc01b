"""The records reader: strict types, named bad lines, torn tails skipped and reported, SQL databases by query."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from ab_router import records
from abtest.experiment.ingest.read import (
    RULE_EVENT,
    RULE_JSON,
    RULE_MISSING,
    RULE_TYPE,
    RecordError,
    allowed_events,
    check_line,
    open_records,
)
from tests.fixtures.experiment_records import (
    ExperimentRecords,
    RecordsSpec,
    copy_records_to_database,
    write_experiment_records,
)

RULES = {
    "wrong_type": RULE_TYPE,
    "missing_field": RULE_MISSING,
    "unknown_event": RULE_EVENT,
    "bad_json": RULE_JSON,
}


def table_counts(location: str | Path, **options) -> dict[str, int]:
    with open_records(location, **options) as store:
        return {
            table: int(store.query(f"SELECT count(*) AS n FROM {t.sql_table}")["n"].iloc[0])
            for table, t in records.RECORD_TYPES.items()
        }


def rewrite_line(path: Path, line: int, change) -> None:
    """Replace 1-based ``line`` of ``path`` by ``change(record)`` (a dict) or by the bytes it returns."""
    lines = path.read_bytes().splitlines(keepends=True)
    new = change(json.loads(lines[line - 1]))
    lines[line - 1] = new if isinstance(new, bytes) else (json.dumps(new) + "\n").encode()
    path.write_bytes(b"".join(lines))


def test_clean_directory_loads_every_row_typed(clean_records: ExperimentRecords) -> None:
    with open_records(clean_records.directory) as store:
        assert store.torn_tails == ()
        assert {t: len(p) for t, p in store.files.items()} == {t: 2 for t in records.RECORD_TYPES}
        types = store.query("SELECT typeof(user_id) AS u, typeof(event_time) AS t, typeof(forced) AS f "
                            "FROM abtest_decisions LIMIT 1").iloc[0]  # fmt: skip
        assert tuple(types) == ("BIGINT", "TIMESTAMP WITH TIME ZONE", "BOOLEAN")
        value = store.query("SELECT min(value) AS v FROM abtest_outcomes")["v"].iloc[0]
    assert value == 1.0
    assert table_counts(clean_records.directory) == clean_records.rows


def test_torn_tail_is_reported_by_file_and_line_and_skipped(tmp_path: Path, caplog) -> None:
    written = write_experiment_records(tmp_path / "r", RecordsSpec(n_users=30, days=2, torn_tail=True))
    lines_before = written.torn_file.read_bytes().count(b"\n")
    with caplog.at_level(logging.WARNING), open_records(written.directory) as store:
        (tail,) = store.torn_tails
        count = int(store.query("SELECT count(*) AS n FROM abtest_decisions")["n"].iloc[0])
    assert tail.path == written.torn_file
    assert tail.line == lines_before + 1
    assert count == written.rows["decisions"]  # the partial record is not mixed in
    assert f"torn tail skipped: {written.torn_file}" in caplog.text


def test_unreadable_last_line_with_newline_is_a_torn_tail_too(clean_records: ExperimentRecords) -> None:
    path = clean_records.files("impressions")[0]
    with path.open("ab") as handle:
        handle.write(b"\x00\x00\x00\n")  # what a crash can leave after the last complete write
    with open_records(clean_records.directory) as store:
        assert [(tail.path, tail.line) for tail in store.torn_tails] == [(path, path.read_bytes().count(b"\n"))]
        count = int(store.query("SELECT count(*) AS n FROM abtest_impressions")["n"].iloc[0])
    assert count == clean_records.rows["impressions"]


@pytest.mark.parametrize(
    ("table", "rule"),
    [
        ("decisions", "wrong_type"),
        ("impressions", "missing_field"),
        ("outcomes", "unknown_event"),
        ("outcomes", "bad_json"),
        ("decisions", "bad_json"),
    ],
)
def test_malformed_line_is_named_by_file_line_and_rule(tmp_path: Path, table: str, rule: str) -> None:
    written = write_experiment_records(tmp_path / "r", RecordsSpec(n_users=30, days=2, malformed=((table, rule),)))
    (bad,) = written.malformed
    with pytest.raises(RecordError) as raised:
        open_records(written.directory)
    assert raised.value.where == f"{bad.path}, line {bad.line}"
    assert raised.value.rule == RULES[rule]
    assert f"{bad.path}, line {bad.line}: {RULES[rule]}" in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("user_id", 1.5, RULE_TYPE),  # DuckDB's typed reader would round it to 2
        ("user_id", "12", RULE_TYPE),  # ... and cast this one
        ("item_id", True, RULE_TYPE),
        ("request_id", 42, RULE_TYPE),
        ("arm", None, RULE_MISSING),
        ("cold_user", "true", RULE_TYPE),
        ("cold_item", 1, RULE_TYPE),
        ("score", "0.5", RULE_TYPE),
        ("event_time", "2026-11-02T10:00:00", RULE_TYPE),  # no offset
        ("event_time", "yesterday", RULE_TYPE),
        ("user_id", 2**64, RULE_TYPE),
    ],
)
def test_every_kind_is_checked_strictly(
    clean_records: ExperimentRecords, field: str, value: object, rule: str
) -> None:
    path = clean_records.files("decisions")[1]
    rewrite_line(path, 3, lambda record: {**record, field: value})
    with pytest.raises(RecordError) as raised:
        open_records(clean_records.directory)
    assert (raised.value.where, raised.value.rule) == (f"{path}, line 3", rule)
    assert repr(field) in raised.value.detail


def test_null_double_is_accepted_as_nan_and_declared_event_too(clean_records: ExperimentRecords) -> None:
    rewrite_line(clean_records.files("decisions")[0], 2, lambda record: {**record, "score": None})
    purchase = {"event": "purchase", "value": 9.5}
    rewrite_line(clean_records.files("outcomes")[0], 1, lambda record: {**record, **purchase})
    with pytest.raises(RecordError, match="unknown outcome event"):
        open_records(clean_records.directory)
    with open_records(clean_records.directory, events=("purchase",)) as store:
        nulls = store.query("SELECT count(*) AS n FROM abtest_decisions WHERE score IS NULL")["n"].iloc[0]
        purchase = store.query("SELECT value FROM abtest_outcomes WHERE event = 'purchase'")["value"].tolist()
    assert (nulls, purchase) == (1, [9.5])


def test_unknown_extra_fields_are_ignored(clean_records: ExperimentRecords) -> None:
    rewrite_line(clean_records.files("impressions")[0], 1, lambda record: {**record, "slate_size": 4})
    assert table_counts(clean_records.directory) == clean_records.rows


def test_check_line_rules() -> None:
    good = {"event_id": "o1", "event_time": "2026-11-02T00:00:00+00:00", "request_id": "r", "user_id": 1,
            "item_id": 2, "event": "click"}  # fmt: skip
    events = allowed_events()
    assert check_line(json.dumps(good).encode(), records.OUTCOMES, events) is None  # value is optional
    assert check_line(b"[1, 2]", records.OUTCOMES, events)[0] == RULE_JSON
    assert check_line(json.dumps({**good, "event": "buy"}).encode(), records.OUTCOMES, events)[0] == RULE_EVENT
    assert check_line(json.dumps({**good, "value": "1"}).encode(), records.OUTCOMES, events)[0] == RULE_TYPE
    missing = {k: v for k, v in good.items() if k != "request_id"}
    assert check_line(json.dumps(missing).encode(), records.OUTCOMES, events) == (
        RULE_MISSING,
        "outcomes field 'request_id' (string) is absent",
    )
    assert allowed_events(("purchase", "click")) == ("click", "purchase")
    with pytest.raises(ValueError, match="non-empty strings"):
        allowed_events(("",))


def test_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        open_records(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------- SQL
def test_sqlite_database_is_read_in_place(clean_records: ExperimentRecords, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    copy_records_to_database(clean_records, url)
    assert table_counts(url) == clean_records.rows


def test_sqlite_tables_missing_are_read_as_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    sa.create_engine(url).connect().close()
    assert table_counts(url) == {table: 0 for table in records.RECORD_TYPES}


@pytest.mark.parametrize(
    ("statement", "rule", "where"),
    [
        ("UPDATE abtest_decisions SET user_id = 'u7' WHERE request_id = 'req-3'", RULE_TYPE, "request_id='req-3'"),
        ("UPDATE abtest_outcomes SET value = 'high' WHERE event_id = 'out-5'", RULE_TYPE, "event_id='out-5'"),
        ("UPDATE abtest_outcomes SET event = 'buy' WHERE event_id = 'out-2'", RULE_EVENT, "event_id='out-2'"),
        ("UPDATE abtest_impressions SET event_time = 'soon' WHERE event_id = 'imp-4'", RULE_TYPE, "'imp-4'"),
    ],
)
def test_sqlite_bad_row_is_named_by_table_key_and_rule(
    clean_records: ExperimentRecords, tmp_path: Path, statement: str, rule: str, where: str
) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    copy_records_to_database(clean_records, url)
    with sa.create_engine(url).begin() as connection:
        assert connection.execute(sa.text(statement)).rowcount >= 1
    with pytest.raises(RecordError) as raised:
        open_records(url)
    assert raised.value.rule == rule
    assert where in raised.value.where


def test_sql_column_declared_with_another_type_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    declared = {"string": "TEXT", "timestamp": "DATETIME", "long": "BIGINT"}
    columns = ", ".join(
        f'"{f.name}" {"TEXT" if f.name == "position" else declared[f.kind]}' for f in records.IMPRESSIONS.fields
    )
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE abtest_impressions ({columns})"))
    with pytest.raises(RecordError, match=r"column 'position' is declared TEXT, records\.py says long"):
        open_records(url)


def test_postgresql_database_is_read_and_checked(clean_records: ExperimentRecords, postgres_url: str) -> None:
    copy_records_to_database(clean_records, postgres_url)
    try:
        assert table_counts(postgres_url) == clean_records.rows
        with sa.create_engine(postgres_url).begin() as connection:
            connection.execute(sa.text("UPDATE abtest_outcomes SET event = 'buy' WHERE event_id = 'out-1'"))
        with pytest.raises(RecordError) as raised:
            open_records(postgres_url)
        assert (raised.value.rule, "event_id='out-1'" in raised.value.where) == (RULE_EVENT, True)
    finally:
        with sa.create_engine(postgres_url).begin() as connection:
            for record_type in records.RECORD_TYPES.values():
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {record_type.sql_table}"))


def test_parquet_cache_is_reused_until_a_file_changes(clean_records: ExperimentRecords, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = table_counts(clean_records.directory, cache_dir=cache)
    entries = sorted(cache.glob("*.parquet"))
    assert len(entries) == 6 and first == clean_records.rows
    stamps = {entry: entry.stat().st_mtime_ns for entry in entries}
    assert table_counts(clean_records.directory, cache_dir=cache) == first
    assert {entry: entry.stat().st_mtime_ns for entry in sorted(cache.glob("*.parquet"))} == stamps  # reused
    path = clean_records.files("impressions")[0]
    last = path.read_bytes().splitlines(keepends=True)[-1]
    path.write_bytes(path.read_bytes() + last.replace(b'"event_id":"imp-', b'"event_id":"imp-again-'))
    assert table_counts(clean_records.directory, cache_dir=cache)["impressions"] == first["impressions"] + 1
    assert len(list(cache.glob("*.parquet"))) == 7  # the changed file has a new entry


def test_parquet_cache_keeps_no_entry_for_a_bad_file_or_a_torn_one(tmp_path: Path) -> None:
    spec = RecordsSpec(n_users=30, days=2, torn_tail=True, malformed=(("outcomes", "unknown_event"),))
    written = write_experiment_records(tmp_path / "r", spec)
    cache = tmp_path / "cache"
    with pytest.raises(RecordError, match=RULE_EVENT):
        open_records(written.directory, cache_dir=cache)
    tables = sorted(entry.name.split("-")[0] for entry in cache.glob("*.parquet"))
    assert tables == ["decisions", "impressions", "impressions"]  # torn decisions file and bad outcomes file: none
    assert not list(cache.glob("*.partial"))
