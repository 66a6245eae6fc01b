"""Shared measuring tools for the benchmarks: run a command, time it, read its peak memory, print tables.

Benchmarks run on demand (never in CI's test suite) and print markdown tables with medians over repeats and the
ratio to a baseline measured in the same run, so numbers from different machines are compared by ratio.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak resident memory of one command, including every process it waited for."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    # User + system CPU seconds of the process tree: on a loaded shared machine wall time stretches with the
    # load, CPU time much less, so it estimates the unloaded wall time of single-threaded work.
    cpu_s: float = float("nan")


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
    return Measurement(
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )


def timed_phase(phases: dict[str, float], name: str, action: Callable[[], Any]) -> Any:
    """Run ``action`` and record its wall and CPU seconds in ``phases`` as ``<name>_wall_s`` / ``<name>_cpu_s``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    phases[f"{name}_wall_s"] = time.perf_counter() - wall
    phases[f"{name}_cpu_s"] = time.process_time() - cpu
    return result


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


# ----------------------------------------------------------------------------- added for issue 9's benchmarks
def load_line() -> str:
    """The load average next to every table: on a shared 2-core machine it says how much to trust the numbers."""
    one, five, fifteen = os.getloadavg()
    return f"load average (1/5/15 min): {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with numpy's default linear interpolation."""
    if not len(values):
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def scaling_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Slope of log(time) against log(size): 1.0 = linear, 2.0 = quadratic (NaN with fewer than 2 sizes)."""
    if len(sizes) != len(times):
        raise ValueError(f"sizes and times must have the same length, got {len(sizes)} and {len(times)}")
    if len(set(sizes)) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(times, dtype=float)), 1)
    return float(slope)


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 4 of /proc/<pid>/stat is the parent pid; the command name (field 2) may hold spaces.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants alive now."""
    children = _children_of()
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def rss_mb(pids: Sequence[int]) -> float:
    """Sum of VmRSS (from /proc/<pid>/status) over ``pids``, in MB; processes gone meanwhile count 0."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


def snapshot_project(dest: Path, *, code: str = "head") -> Path:
    """A frozen copy of the project to run benchmarks on, so other people's edits cannot change code mid-run.

    ``code="head"`` exports the last commit (``git archive``); ``"worktree"`` copies the working tree's tracked
    and untracked, non-ignored files. The copy has no ``.git``: the pipeline's code version is then a hash of its
    files, stable for the whole benchmark (a cached ``main`` can only be reused if that holds).
    """
    if code not in ("head", "worktree"):
        raise ValueError(f"code must be 'head' or 'worktree', got {code!r}")
    dest.mkdir(parents=True, exist_ok=True)
    if code == "head":
        with tempfile.TemporaryFile() as archive:
            subprocess.run(["git", "archive", "HEAD"], cwd=PROJECT_DIR, stdout=archive, check=True)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(dest, filter="data")
        return dest
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for relative in listed:
        source = PROJECT_DIR / relative
        if source.is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relative)
    return dest


def git_head() -> str:
    """The checkout's commit (short), to print beside the tables."""
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


# Set, to a description of the code, in a benchmark that re-runs itself from a frozen copy of the project.
SNAPSHOT_ENV = "ABTEST_BENCH_CODE"


def rerun_in_snapshot(module: str, argv: Sequence[str], *, code: str) -> int | None:
    """Run ``python -m module argv`` again from a frozen copy of the project (see :func:`snapshot_project`).

    A benchmark that imports the steps in process would otherwise mix code versions while other people edit the
    checkout. Returns the child's exit code, or None when this process already is that child.
    """
    if os.environ.get(SNAPSHOT_ENV):
        return None
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        project = snapshot_project(Path(tmp) / "project", code=code)
        env = {**os.environ, SNAPSHOT_ENV: f"{code} of {git_head()}", "PYTHONPATH": str(project)}
        return subprocess.call([sys.executable, "-m", module, *argv], cwd=project, env=env)


def code_description() -> str:
    """Which code a benchmark measured, for the header above its tables."""
    return os.environ.get(SNAPSHOT_ENV) or f"working tree at {git_head()}"


def start_benchmark_process(module: str, argv: Sequence[str] | None, *, code: str | None) -> bool:
    """Common start of a benchmark's ``main``; True when the work already ran in a snapshot child.

    With ``code`` set, the benchmark re-runs itself from a frozen copy of the project (see
    :func:`rerun_in_snapshot`); a failing child exits this process with its code. Otherwise (or in the child) it
    sets up logging and drops MLflow variables a caller's shell may have left: a leftover experiment or run would
    redirect or break the benchmark's own `mlflow run` children.
    """
    if code is not None:
        exit_code = rerun_in_snapshot(module, list(sys.argv[1:] if argv is None else argv), code=code)
        if exit_code is not None:
            if exit_code:
                raise SystemExit(exit_code)
            return True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(name, None)
    return False


def use_fresh_store(root: Path, experiment: str) -> str:
    """Point this process and its children (servers included) at a new SQLite store under ``root``.

    Returns the id of a new experiment whose artifacts live under ``root`` too, never in ./mlruns.
    """
    import mlflow  # here, not at module top: the table-only helpers stay importable without it

    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = mlflow.MlflowClient().create_experiment(experiment, artifact_location=(root / "art").as_uri())
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
