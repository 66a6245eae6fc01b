"""The engines benchmark: its crossover sentence and result rows on toy numbers, and one real tiny DuckDB run."""

from __future__ import annotations

import pytest

from benchmarks import analyze_engines
from benchmarks.analyze_engines import EngineRun, crossover, result_rows


def run(engine: str, decisions: int, wall: float, digest: str = "same") -> EngineRun:
    return EngineRun(
        engine, decisions, wall, wall * 0.9, 100.0, 300.0, {"read_and_reduce_wall_s": wall / 2}, digest
    )


def test_crossover_names_the_smallest_size_where_spark_is_faster() -> None:
    runs = [run("duckdb", 10, 1.0), run("spark", 10, 5.0), run("duckdb", 100, 20.0), run("spark", 100, 10.0)]
    assert crossover(runs) == "Spark overtakes DuckDB at 100 decision rows (2.00x faster by wall time)."
    slower = [run("duckdb", 10, 1.0), run("spark", 10, 5.0), run("duckdb", 100, 2.0), run("spark", 100, 8.0)]
    assert crossover(slower) == (
        "Spark does not overtake DuckDB on this machine up to 100 decision rows "
        "(at that size Spark takes 4.00x DuckDB's wall time)."
    )
    assert crossover([run("duckdb", 10, 1.0)]) == "No size was measured on both engines."


def test_result_rows_take_medians_and_compare_the_reductions() -> None:
    runs = [
        run("duckdb", 1000, 2.0),
        run("duckdb", 1000, 4.0),
        run("duckdb", 1000, 9.0),
        run("spark", 1000, 8.0, "x"),
    ]
    duck, spark = result_rows(runs)
    assert duck[:4] == ["1,000", "duckdb", 4.0, 3.6] and duck[6] == "250" and duck[8] == 2.0
    assert duck[-1] == spark[-1] == "NO"  # the two engines' user-days digests differ


def test_a_tiny_duckdb_run_prints_every_table(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ABTEST_DUCKDB_MEMORY_LIMIT", raising=False)
    analyze_engines.main(["--decisions", "3000", "--engines", "duckdb", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "## Records written" in out and "## Analysis (median of repeats)" in out
    assert "| duckdb |" in out and "DuckDB memory cap 1GB" in out
    assert out.strip().splitlines()[-3] == "No size was measured on both engines."
