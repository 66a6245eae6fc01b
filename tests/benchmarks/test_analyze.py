"""The analyze benchmark's table functions on toy numbers, and its records spec's size."""

from __future__ import annotations

import math

import pytest

from benchmarks.analyze import DECISIONS_PER_USER, phase_rows, records_spec, stage_rows, target_rows
from benchmarks.harness import Measurement


def test_stage_rows_report_medians_rows_per_second_and_the_ratio_to_the_scan() -> None:
    measured = {
        "scan": [
            Measurement(10.0, 100.0, 0, 8.0),
            Measurement(12.0, 120.0, 0, 9.0),
            Measurement(30.0, 90.0, 0, 9.5),
        ],
        "analyze": [Measurement(40.0, 900.0, 0, 70.0)],
    }
    rows = stage_rows(measured, decisions=1_000_000)
    assert rows[0] == ["scan", 12.0, 9.0, 120.0, 1_000_000 / 12.0, 1.0]
    assert rows[1] == ["analyze", 40.0, 70.0, 900.0, 25_000.0, 40.0 / 12.0]
    without_scan = stage_rows({"analyze": measured["analyze"]}, decisions=10)
    assert math.isnan(without_scan[0][5])


def test_target_rows_judge_wall_cpu_per_core_and_peak_memory() -> None:
    rows = target_rows([Measurement(70.0, 2100.0, 0, 100.0), Measurement(50.0, 1500.0, 0, 90.0)], cores=2)
    assert rows == [
        ["analyze wall s", "<= 60", 60.0, "met"],
        ["analyze CPU s / 2 cores", "<= 60", 47.5, "met"],
        ["analyze peak RSS MB", "<= 2048", 2100.0, "MISSED"],
    ]


def test_phase_rows_keep_the_child_order() -> None:
    phases = {"read_wall_s": 2.0, "read_cpu_s": 1.5, "rows": 7, "reduce_wall_s": 3.0}
    rows = phase_rows(phases)
    assert rows[0] == ["read", 2.0, 1.5]
    assert rows[1][:2] == ["reduce", 3.0] and math.isnan(rows[1][2])


@pytest.mark.parametrize("decisions", [10_000_000, 200_000])
def test_records_spec_writes_about_the_asked_decisions(decisions: int) -> None:
    spec = records_spec(decisions)
    expected = spec.n_users * spec.days * spec.active_share * spec.requests_per_active_day * spec.candidates
    assert expected == pytest.approx(decisions) and spec.n_users * DECISIONS_PER_USER == decisions
