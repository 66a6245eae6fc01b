"""The score benchmark: its table on toy numbers, and a real run on tiny sizes against the session's router."""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.score import HEADER, Measured, main, table_rows, write_pairs


def test_table_rows_report_medians_the_peak_and_the_ratio_to_served() -> None:
    measured = {
        "local": [
            Measured(1000, 2.0, 4.0, 3.0, 300.0),
            Measured(1000, 1.0, 5.0, 2.0, 350.0),
            Measured(1000, 4.0, 8.0, 9.0, 320.0),
        ],
        "served": [Measured(1000, 10.0, 20.0, 12.0, 500.0)],
    }
    rows = table_rows(measured)
    assert rows[0] == ["local", 1000, 500.0, 200.0, 5.0, 3.0, 350.0, 5.0]
    assert rows[1] == ["served", 1000, 100.0, 50.0, 20.0, 12.0, 500.0, 1.0]
    assert math.isnan(table_rows({"local": measured["local"]})[0][7])  # no served row: no ratio


def test_write_pairs_writes_ids_from_the_given_sets_with_a_request_id_each(tmp_path) -> None:
    path = write_pairs(tmp_path / "p.parquet", 2500, users=np.array([1, 2]), items=np.array([7]))
    table = pq.read_table(path)
    assert table.num_rows == 2500 and set(table.column("user_id").to_pylist()) == {1, 2}
    assert table.column("request_id").to_pylist()[:2] == ["replay-0", "replay-1"]
    assert len(set(table.column("request_id").to_pylist())) == 2500


@pytest.mark.e2e
def test_a_tiny_run_prints_a_row_per_engine(router_run: str, session_tracking: str, capsys) -> None:
    sizes = ["--pairs", "3000", "--repeats", "1", "--chunk-rows", "1000", "--served-batch-rows", "1000"]
    report = main([*sizes, "--engines", "local,served", "--tracking-uri", session_tracking])
    assert report in capsys.readouterr().out
    assert "load average (1/5/15 min)" in report
    lines = [line for line in report.splitlines() if line.startswith("|")]
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert set(cells) == {"local", "served"}
    for engine, values in cells.items():
        numbers = [float(re.sub(",", "", value)) for value in values]
        assert numbers[0] == 3000, engine  # every pair scored
        assert all(n > 0 for n in numbers[1:6]), (engine, values)
        assert numbers[1] >= numbers[2]  # scoring alone is at least as fast as the whole process
    assert float(cells["served"][6]) == 1.0
