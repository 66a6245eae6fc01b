"""Shared measuring tools for the benchmarks: run a command, time it, read its peak memory, print tables.

Benchmarks run on demand (never in CI's test suite) and print markdown tables with medians over repeats and the
ratio to a baseline measured in the same run, so numbers from different machines are compared by ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak resident memory of one command, including every process it waited for."""

    wall_s: float
    peak_rss_mb: float
    returncode: int


def run_measured(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, check: bool = True
) -> Measurement:
    """Run ``command`` and measure it.

    ``os.wait4`` returns the rusage of that one child, whose ``ru_maxrss`` covers the child and the descendants it
    waited for (``mlflow run`` waits for its step process), so the figure is the peak of the whole step.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(command),
        env={**os.environ, **(env or {})},
        cwd=cwd or PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Read stderr before waiting so a chatty child cannot fill the pipe and block.
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        tail = stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"command failed with exit code {proc.returncode}: {' '.join(command)}\n{tail}")
    return Measurement(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024, returncode=proc.returncode)


def median(values: Sequence[float]) -> float:
    """Median, the statistic every table reports (robust to one slow repeat on a shared 2-core machine)."""
    return float(statistics.median(values))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as a GitHub markdown table; floats get 3 significant decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """One line naming the machine, printed above every table so numbers keep their context."""
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
