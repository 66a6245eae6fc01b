"""The compactor: the same reduction from its Parquet, canonical files, torn tails reported, nothing half-made."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ab_router import records
from abtest.config import PROJECT_DIR
from abtest.experiment.ingest import layout
from abtest.experiment.ingest.compact import PART_NAME, compact_records, main
from abtest.experiment.ingest.read import RULE_EVENT, RULE_TYPE, RecordError, open_records
from abtest.experiment.ingest.reduce import read_experiment
from tests.abtest.experiment.ingest.conftest import ALL_DEFECTS
from tests.fixtures.experiment_records import (
    ExperimentRecords,
    RecordsSpec,
    assert_same_reduction,
    experiment_for,
    write_experiment_records,
)

SMALL = RecordsSpec(n_users=40, days=2, seed=4)


def rewrite_line(path: Path, line: int, change) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = (json.dumps(change(json.loads(lines[line - 1]))) + "\n").encode()
    path.write_bytes(b"".join(lines))


def test_compacted_records_reduce_exactly_as_jsonl(defect_records: ExperimentRecords, tmp_path: Path) -> None:
    target = tmp_path / "compacted"
    compacted = compact_records(defect_records.directory, target)
    assert compacted.rows == defect_records.rows
    assert compacted.torn_tails == ()
    experiment = experiment_for(ALL_DEFECTS)
    expected = read_experiment(defect_records.directory, experiment)
    assert_same_reduction(read_experiment(target, experiment), expected)


def test_each_table_is_one_file_in_the_canonical_schema_sorted_by_time(
    defect_records: ExperimentRecords, tmp_path: Path
) -> None:
    target = tmp_path / "compacted"
    compact_records(defect_records.directory, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == sorted(
        f"{table}/{PART_NAME}" for table in records.RECORD_TYPES
    )
    for table, record_type in records.RECORD_TYPES.items():
        written = pq.read_table(target / table / PART_NAME)
        assert written.schema.equals(layout.arrow_schema(record_type))
        assert written.num_rows == defect_records.rows[table]
        times = written.column("event_time").to_pylist()
        assert times == sorted(times)
    assert [p.name for p in tmp_path.iterdir()] == ["compacted"]  # the staging folder became the target


def test_compacting_twice_gives_the_same_rows(clean_records: ExperimentRecords, tmp_path: Path) -> None:
    compact_records(clean_records.directory, tmp_path / "once")
    compact_records(tmp_path / "once", tmp_path / "twice")
    for table in records.RECORD_TYPES:
        assert pq.read_table(tmp_path / "once" / table / PART_NAME).equals(
            pq.read_table(tmp_path / "twice" / table / PART_NAME)
        )


def test_a_torn_tail_is_skipped_and_reported(tmp_path: Path) -> None:
    written = write_experiment_records(tmp_path / "records", replace(SMALL, torn_tail=True))
    lines = written.torn_file.read_bytes().count(b"\n")
    compacted = compact_records(written.directory, tmp_path / "compacted")
    assert [(tail.path, tail.line) for tail in compacted.torn_tails] == [(written.torn_file, lines + 1)]
    assert compacted.rows == written.rows  # the partial record is not in the Parquet
    assert "1 torn tail(s) skipped" in compacted.summary()
    with open_records(tmp_path / "compacted") as store:
        assert store.torn_tails == ()
        count = int(store.query("SELECT count(*) AS n FROM abtest_decisions")["n"].iloc[0])
    assert count == written.rows["decisions"]


def test_a_bad_record_stops_the_compaction_and_leaves_nothing(tmp_path: Path) -> None:
    written = write_experiment_records(tmp_path / "records", SMALL)
    path = written.files("decisions")[0]
    rewrite_line(path, 4, lambda record: {**record, "user_id": "7"})
    with pytest.raises(RecordError) as raised:
        compact_records(written.directory, tmp_path / "compacted")
    assert (raised.value.where, raised.value.rule) == (f"{path}, line 4", RULE_TYPE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]


def test_declared_events_are_compacted_undeclared_ones_refused(tmp_path: Path) -> None:
    written = write_experiment_records(tmp_path / "records", SMALL)
    rewrite_line(written.files("outcomes")[0], 1, lambda record: {**record, "event": "purchase", "value": 12.5})
    with pytest.raises(RecordError) as raised:
        compact_records(written.directory, tmp_path / "refused")
    assert raised.value.rule == RULE_EVENT
    compact_records(written.directory, tmp_path / "compacted", events=["purchase"])
    with open_records(tmp_path / "compacted", events=("purchase",)) as store:
        bought = store.query("SELECT value FROM abtest_outcomes WHERE event = 'purchase'")["value"].tolist()
    assert bought == [12.5]


def test_a_non_empty_target_is_refused_and_an_empty_one_filled(
    clean_records: ExperimentRecords, tmp_path: Path
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not empty"):
        compact_records(clean_records.directory, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compact_records(clean_records.directory, empty).rows == clean_records.rows
    with pytest.raises(ValueError, match="inside the source"):
        compact_records(clean_records.directory, clean_records.directory / "decisions" / "compacted")


def test_cli_prints_one_summary_line(clean_records: ExperimentRecords, tmp_path: Path, capsys) -> None:
    assert main([str(clean_records.directory), str(tmp_path / "compacted"), "--events", "purchase, signup"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    rows = clean_records.rows
    assert line == (
        f"compacted {clean_records.directory} -> {tmp_path / 'compacted'}: decisions {rows['decisions']:,}, "
        f"impressions {rows['impressions']:,}, outcomes {rows['outcomes']:,} rows; 0 torn tail(s) skipped"
    )


def test_cli_error_is_one_line_and_exit_code_2(clean_records: ExperimentRecords, tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "x").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "abtest.experiment.ingest.compact", str(clean_records.directory), str(target)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"compact: error: target {target} is not empty: compact writes into a new or empty folder only"
    ]
