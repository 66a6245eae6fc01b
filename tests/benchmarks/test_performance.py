"""The speed benchmarks' bookkeeping on toy numbers (the benchmarks themselves run on demand, not here)."""

from __future__ import annotations

import math
import os

import pytest

from benchmarks.harness import Measurement, percentile, process_tree, rss_mb, scaling_exponent
from benchmarks.pipeline import MAIN_CACHED, MAIN_COLD, SIZES, Results, parse_sizes, tables
from benchmarks.serving import Rates, SoakResult, targets_table


def test_scaling_exponent_is_the_log_log_slope() -> None:
    assert scaling_exponent([1e5, 1e6, 1e7], [1.0, 10.0, 100.0]) == pytest.approx(1.0)
    assert scaling_exponent([1e5, 1e6], [1.0, 100.0]) == pytest.approx(2.0)
    assert math.isnan(scaling_exponent([1e5], [3.0]))
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_process_tree_rss_counts_this_process() -> None:
    assert os.getpid() in process_tree(os.getpid())
    assert rss_mb([os.getpid()]) > 10


def test_pipeline_tables_report_medians_exponents_ratios_and_targets() -> None:
    results = Results({})
    for wall in (10.0, 30.0, 20.0):  # median 20 s
        results.add("ml-100k", {"prepare": Measurement(wall, 400.0, 0, cpu_s=wall / 2)})
    results.add("ml-1m", {"prepare": Measurement(200.0, 900.0, 0, cpu_s=100.0)})
    results.add(
        "ml-100k",
        {MAIN_COLD: Measurement(50.0, 500.0, 0, cpu_s=40.0), MAIN_CACHED: Measurement(16.0, 300.0, 0, cpu_s=9.0)},
    )
    text = tables(results, [SIZES["ml-100k"], SIZES["ml-1m"]])
    exponent = math.log(200 / 20) / math.log(SIZES["ml-1m"].ratings / SIZES["ml-100k"].ratings)
    assert f"| prepare | 20.000 | 10.000 | 200.0 | 100.0 | {exponent:.3f} | {exponent:.3f} |" in text
    assert "| main (cold), ml-100k | <= 60 s | 50.000 | met | 40.000 | met |" in text
    assert "| main (cached), ml-100k | <= 15 s | 16.000 | MISSED | 9.000 | met |" in text
    assert "| main (cold), ml-1m | <= 300 s | nan | not measured | nan | not measured |" in text
    assert (
        "| ml-100k | 20.000 | 50.000 | 2.500 | 16.000 | 0.320 | 10.000 | 40.000 | 4.000 | 9.000 | 0.225 |" in text
    )


def test_parse_sizes_rejects_unknown_names() -> None:
    assert [s.name for s in parse_sizes("ml-100k, ml-1m-x10")] == ["ml-100k", "ml-1m-x10"]
    with pytest.raises(Exception, match="sizes must be a comma list"):
        parse_sizes("ml-20m")


def test_serving_targets_judge_ratio_share_errors_and_memory() -> None:
    router = {"single p50 ms": 6.0}
    policy_b = {"single p50 ms": 4.0}
    rates = {
        "raw Booster.predict (feature matrix given)": Rates(wall=100.0, cpu=100.0),
        "router predict (as configured: A and B)": Rates(wall=60.0, cpu=40.0),
        "router predict, forced to B": Rates(wall=70.0, cpu=55.0),
    }
    soak = SoakResult(windows=[], errors=0, requests=100, rss_start_mb=300.0, rss_end_mb=320.0, rss_max_mb=330.0)
    text = targets_table(router, policy_b, rates, soak)
    assert "| router single-row p50 / policy B's | <= 1.25 | 1.500 | MISSED |" in text
    assert "| router in-process rows/s / Booster.predict's (CPU time) | >= 0.5 | 0.400 | MISSED |" in text
    assert "| router in-process rows/s / Booster.predict's (wall time) | >= 0.5 | 0.600 | met |" in text
    assert "| router forced to B in-process rows/s / Booster.predict's (CPU time) | >= 0.5 | 0.550 | met |" in text
    assert "| soak errors | 0 | 0.000 | met |" in text
    assert "| soak server RSS growth, MB | <= 50 | 20.000 | met |" in text
