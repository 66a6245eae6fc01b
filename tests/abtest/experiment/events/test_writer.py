"""The event writer: impressions and outcomes into a directory, SQLite and PostgreSQL; idempotent; a bad batch
writes nothing and names the row, field, rule and value."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ab_router.records import IMPRESSIONS, OUTCOMES, RecordType
from ab_router.sinks import read_jsonl_records, sql_table, table_files
from abtest.experiment.events import RecordError, content_event_id, write_impressions, write_outcomes
from team.postgres import find_postgres_bindir, throwaway_postgres

T0 = datetime(2026, 12, 1, 9, 45, tzinfo=UTC)


def impressions(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_time": [T0 + timedelta(seconds=i) for i in range(n)],
            "request_id": ["req-1"] * n,
            "user_id": [7] * n,
            "item_id": list(range(100, 100 + n)),
            "position": list(range(n)),
        }
    )


def clicks() -> list[dict]:
    return [
        {
            "event_time": "2026-12-01T09:46:00Z",
            "request_id": "req-1",
            "user_id": 7,
            "item_id": 101,
            "event": "click",
        },
        {
            "event_id": "given-1",
            "event_time": "2026-12-01T10:46:00+01:00",
            "request_id": "req-1",
            "user_id": 7,
            "item_id": 102,
            "event": "purchase",
            "value": 12.5,
        },
    ]


def stored(sink: str, record_type: RecordType) -> list[dict]:
    if "://" not in sink:
        return [r for path in table_files(sink, record_type) for r in read_jsonl_records(path)[0]]
    engine = sa.create_engine(sink)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(sql_table(record_type, sa.MetaData())))]
    engine.dispose()
    return rows


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if find_postgres_bindir() is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("ABTEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message}, and ABTEST_REQUIRE_POSTGRES=1 says they must be here")
        pytest.skip(message)
    with throwaway_postgres(databases=("abtest_events",)) as cluster:
        yield cluster.uri("abtest_events")


@pytest.fixture(params=["directory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "directory":
        return str(tmp_path / "records")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    return request.getfixturevalue("postgres_url")


def test_impressions_are_stored_typed_and_a_second_write_adds_nothing(sink: str) -> None:
    first = write_impressions(impressions(), sink)
    assert (first.received, first.written, first.already_stored) == (4, 4, 0)
    again = write_impressions(impressions(), sink)
    assert (again.written, again.already_stored) == (0, 4)
    rows = sorted(stored(sink, IMPRESSIONS), key=lambda r: r["position"])
    assert len(rows) == 4
    assert [r["item_id"] for r in rows] == [100, 101, 102, 103]
    for row in rows:
        assert set(row) == set(IMPRESSIONS.columns)
        assert type(row["user_id"]) is int and type(row["position"]) is int and type(row["request_id"]) is str
        event_time = row["event_time"]
        if isinstance(event_time, str):  # JSON Lines: ISO 8601 with the offset
            assert event_time.endswith("+00:00")
            event_time = datetime.fromisoformat(event_time)
        elif event_time.tzinfo is None:  # SQLite keeps UTC text without a zone
            event_time = event_time.replace(tzinfo=UTC)
        assert event_time == T0 + timedelta(seconds=row["position"])
    # ids made from the content: the same for the same event, wherever it is written
    expected = {content_event_id(IMPRESSIONS, row) for row in impressions().to_dict("records")}
    assert {r["event_id"] for r in rows} == expected and len(expected) == 4


def test_outcomes_keep_given_ids_default_the_value_and_convert_times_to_utc(sink: str) -> None:
    result = write_outcomes(clicks(), sink, events=("click", "purchase"))
    assert result.written == 2
    rows = {r["item_id"]: r for r in stored(sink, OUTCOMES)}
    assert rows[101]["value"] == 1.0 and type(rows[101]["value"]) is float and len(rows[101]["event_id"]) == 32
    assert rows[102]["event_id"] == "given-1" and rows[102]["value"] == 12.5 and rows[102]["event"] == "purchase"
    event_time = rows[102]["event_time"]
    text = event_time if isinstance(event_time, str) else event_time.isoformat()
    assert text.startswith("2026-12-01T09:46:00") or text.startswith("2026-12-01 09:46:00")


def test_a_bad_batch_writes_nothing_and_names_row_field_rule_and_value(tmp_path: Path) -> None:
    frame = impressions()
    frame["position"] = frame["position"].astype(object)
    frame.loc[2, "position"] = "third"
    rows = frame.to_dict("records")
    rows[3]["event_time"] = "2026-12-01T09:45:00"  # no offset
    del rows[1]["user_id"]
    with pytest.raises(RecordError) as error:
        write_impressions(rows, tmp_path / "records", source="app.jsonl")
    message = str(error.value)
    assert message.startswith("impressions from app.jsonl: 3 problem(s) in 4 rows; nothing was written")
    assert "row 1: field 'user_id' is missing (required, long)" in message
    assert "row 2: field 'position' must be an integer (long), got 'third' (str)" in message
    assert "row 3: field 'event_time' must have a UTC offset (Z or +00:00)" in message
    assert "'2026-12-01T09:45:00' (str)" in message
    assert not (tmp_path / "records").exists()


def test_unknown_event_names_fields_and_conflicting_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        RecordError, match=r"row 1: field 'event' 'purchase' is not a declared event name; declared: \['click'\]"
    ):
        write_outcomes(clicks(), tmp_path)
    with pytest.raises(RecordError, match=r"row 0: unknown fields \['positon'\]"):
        write_impressions([{**impressions(1).iloc[0].to_dict(), "positon": 1}], tmp_path)
    with pytest.raises(RecordError, match=r"row 0: field 'value' must be a number \(double\), got True \(bool\)"):
        write_outcomes([{**clicks()[0], "value": True}], tmp_path)
    twice = [{**row, "event_id": "same"} for row in impressions(2).to_dict("records")]
    with pytest.raises(RecordError, match="row 1: event_id 'same' was already given to row 0 with other values"):
        write_impressions(twice, tmp_path)
    assert table_files(tmp_path, IMPRESSIONS) == [] and table_files(tmp_path, OUTCOMES) == []
    repeated = write_impressions(pd.concat([impressions(2), impressions(2)]), tmp_path)
    assert (repeated.received, repeated.written, repeated.repeated_in_input) == (4, 2, 2)
