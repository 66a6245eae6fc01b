"""`python -m abtest.experiment.events`: CSV, JSON Lines and Parquet inputs; bad files name file, line and rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ab_router.records import DECISION_LOG_ENV, IMPRESSIONS, OUTCOMES
from ab_router.sinks import read_jsonl_records, table_files
from abtest.config import PROJECT_DIR
from abtest.experiment.events.cli import main

CSV = """event_id,event_time,request_id,user_id,item_id,position
,2026-12-01T09:45:00Z,0012,7,100,0
,2026-12-01T09:45:00Z,0012,7,101,1
imp-3,2026-12-01T09:45:01+00:00,0013,8,100,0
"""


def stored(root: Path, record_type) -> list[dict]:
    return [r for path in table_files(root, record_type) for r in read_jsonl_records(path)[0]]


def test_csv_is_typed_by_the_schema_and_a_second_run_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "impressions.csv"
    source.write_text(CSV)
    assert main(["impressions", "--sink", str(tmp_path / "records"), "--input", str(source)]) == 0
    assert capsys.readouterr().out.startswith("impressions: 3 written, 0 already stored, 0 repeated")
    rows = sorted(stored(tmp_path / "records", IMPRESSIONS), key=lambda r: (r["request_id"], r["position"]))
    assert [(r["request_id"], r["user_id"], r["position"]) for r in rows] == [
        ("0012", 7, 0),
        ("0012", 7, 1),
        ("0013", 8, 0),
    ]
    assert rows[2]["event_id"] == "imp-3" and rows[2]["event_time"] == "2026-12-01T09:45:01.000000+00:00"
    assert main(["impressions", "--sink", str(tmp_path / "records"), "--input", str(source)]) == 0
    assert capsys.readouterr().out.startswith("impressions: 0 written, 3 already stored")
    assert len(stored(tmp_path / "records", IMPRESSIONS)) == 3


def test_jsonl_and_parquet_outcomes_with_declared_events_into_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    monkeypatch.setenv(DECISION_LOG_ENV, url)  # --sink defaults to the router's sink
    lines = [
        {"event_time": "2026-12-01T09:46:00Z", "request_id": "r1", "user_id": 7, "item_id": 100, "event": "click"},
        {"event_time": "2026-12-01T09:47:00Z", "request_id": "r1", "user_id": 7, "item_id": 100, "event": "rating",
         "value": 4.0},
    ]  # fmt: skip
    jsonl = tmp_path / "outcomes.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["outcomes", "--input", str(jsonl), "--event", "click", "--event", "rating"]) == 0
    parquet = tmp_path / "outcomes.parquet"
    frame = pd.DataFrame(lines).assign(event_time=lambda f: pd.to_datetime(f["event_time"], utc=True))
    frame.to_parquet(parquet)
    assert main(["outcomes", "--input", str(parquet), "--event", "click", "--event", "rating"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("outcomes: 2 written") and printed[1].startswith("outcomes: 0 written, 2 already")


def test_a_bad_file_exits_2_naming_file_line_field_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(CSV.replace("0013,8,100,0", "0013,8,100,first").replace(",7,101,1", ",7.5,101,1"))
    assert main(["impressions", "--sink", str(tmp_path / "records"), "--input", str(source)]) == 2
    error = capsys.readouterr().err
    assert f"impressions from {source}: 2 problem(s) in 3 rows; nothing was written" in error
    assert "row 1 (line 3): field 'user_id' must be an integer (long), got '7.5' (str)" in error
    assert "row 2 (line 4): field 'position' must be an integer (long), got 'first' (str)" in error
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"event_time": "2026-12-01T09:46:00Z"}\n{"event_time": \n')
    assert main(["outcomes", "--sink", str(tmp_path / "records"), "--input", str(broken)]) == 2
    assert f"{broken}: line 2 is not JSON" in capsys.readouterr().err
    assert (
        table_files(tmp_path / "records", IMPRESSIONS) == [] and table_files(tmp_path / "records", OUTCOMES) == []
    )


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    source = tmp_path / "impressions.csv"
    source.write_text(CSV)
    command = [sys.executable, "-m", "abtest.experiment.events", "impressions", "--sink", str(tmp_path / "r"),
               "--input", str(source)]  # fmt: skip
    result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("impressions: 3 written")
