"""The speed benchmarks' bookkeeping on toy numbers (the benchmarks themselves run on demand, not here)."""

from __future__ import annotations

import math
import os

import pytest

from benchmarks.harness import Measurement, percentile, process_tree, rss_mb, scaling_exponent
from benchmarks.pipeline import MAIN_CACHED, MAIN_COLD, SIZES, Results, parse_sizes, tables
from benchmarks.serving import (
    BOOSTER,
    FLOOR,
    POLICY_B,
    ROUTER,
    ROUTER_BEFORE,
    Rates,
    SoakResult,
    http_table,
    targets_table,
)


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


def _timing(single: float, hundred: float, cpu_rate: float) -> dict[str, float]:
    return {
        "single p50 ms": single,
        "single CPU p50 ms": single / 2,
        "100-row p50 ms": hundred,
        "100-row CPU p50 ms": hundred / 2,
        "single p50 ms, python model only": single / 3,
        "100-row p50 ms, python model only": hundred / 3,
        "rows/s (wall)": cpu_rate / 2,
        "rows/s (CPU)": cpu_rate,
        "load s": 3.0,
    }


def test_serving_targets_judge_the_router_against_floor_policy_b_and_the_bounds() -> None:
    http = {
        FLOOR: {"single p50 ms": 4.0},
        ROUTER_BEFORE: {"single p50 ms": 20.0},
        ROUTER: {"single p50 ms": 5.0},
        POLICY_B: {"single p50 ms": 4.5},
    }
    timings = {ROUTER_BEFORE: _timing(8.0, 8.4, 40.0), ROUTER: _timing(0.8, 1.6, 60.0)}
    soak = SoakResult(windows=[], errors=0, requests=100, rss_start_mb=300.0, rss_end_mb=320.0, rss_max_mb=330.0)
    text = targets_table(http, timings, {BOOSTER: Rates(wall=50.0, cpu=100.0)}, soak)
    assert "| router in process, pyfunc predict, single-row p50 ms | <= 1.0 | 8.000 | 0.800 | met |" in text
    assert "| router in process, pyfunc predict, 100-row p50 ms | <= 1.5 | 8.400 | 1.600 | MISSED |" in text
    assert "| router in process, pyfunc predict, 100-row, CPU p50 ms | <= 1.5 | 4.200 | 0.800 | met |" in text
    assert "| router in process, ABRouterModel.predict, 100-row p50 ms | <= 1.5 | 2.800 | 0.533 | met |" in text
    assert "| served router single-row p50 / the floor's | <= 1.5 | 5.000 | 1.250 | met |" in text
    assert "| served router single-row p50 / policy B's (issue 9) | <= 1.25 | 4.444 | 1.111 | met |" in text
    assert "| router in-process rows/s (CPU) / Booster.predict's (issue 9) | >= 0.5 | 0.400 | 0.600 | met |" in (
        text
    )
    assert "| soak errors | 0 |  | 0.000 | met |" in text
    assert "| soak server RSS growth, MB | <= 50 |  | 20.000 | met |" in text
    # Without a before router its column stays empty.
    del http[ROUTER_BEFORE], timings[ROUTER_BEFORE]
    text = targets_table(http, timings, {BOOSTER: Rates(wall=50.0, cpu=100.0)}, None)
    assert "| served router single-row p50 / the floor's | <= 1.5 |  | 1.250 | met |" in text
    assert "soak" not in text


def test_serving_http_table_puts_every_configuration_beside_the_floor() -> None:
    http = {
        FLOOR: {"single p50 ms": 4.0, "10,000-row rows/s": 20_000.0},
        ROUTER: {"single p50 ms": 6.0, "10,000-row rows/s": 10_000.0, "single p50 ms, forced to B": 5.0},
        "router, decision log on": {"single p50 ms": 7.0, "10,000-row rows/s": 9_000.0},
    }
    text = http_table(http)
    logged = "router, decision log on"
    header = f"| metric | {FLOOR} | {ROUTER} | {logged} | {ROUTER} / floor | {logged} / floor |"
    assert text.splitlines()[0] == header
    assert "| single p50 ms | 4.000 | 6.000 | 7.000 | 1.500 | 1.750 |" in text
    assert "| 10,000-row rows/s | 20,000.0 | 10,000.0 | 9,000.0 | 0.500 | 0.450 |" in text
    # forced to B has no floor figure of its own: it is compared with the floor's single-row p50
    assert "| single p50 ms, forced to B |  | 5.000 |  | 1.250 |  |" in text
