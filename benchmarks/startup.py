"""Start-up benchmark: each step's fixed cost, from its process start to its first line of work (issue 15: <= 2 s).

A step's process (``python -m steps.<entry>``, which ``mlflow run`` and main start) does nothing of its own until
its module and everything that module imports are loaded; then ``main`` runs. So the fixed cost is measured as
the time from just before ``python -c "import steps.<entry>; ..."`` is started to the moment the child, right after
the import, reads the clock (the first line ``main`` would run), per step, median over repeats. Beside it: the
import's own cumulative time from ``python -X importtime`` and which heavy libraries the import loaded.

"Before" is the code at ec6154f (a git worktree), "after" the last commit (``--code head``, a frozen copy) or the
working tree (``--code worktree``), interleaved in one session so the load hits both alike. ``--python`` measures
with another interpreter, e.g. the uv-built step environment under ``$MLFLOW_ENV_ROOT``.

Note: these machines set PYTHONDONTWRITEBYTECODE=1, so the project's own modules (and any library installed
without bytecode) are compiled from source at every start; a user's machine usually caches bytecode.

    python -m benchmarks.startup --repeats 5
    python -m benchmarks.startup --python ~/.mlflow/envs/mlflow-<hash>/bin/python
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import (
    PROJECT_DIR,
    git_head,
    load_line,
    machine_line,
    markdown_table,
    median,
    snapshot_project,
)

log = logging.getLogger("benchmarks.startup")

BEFORE_REVISION = "ec6154f"
STEPS: tuple[str, ...] = (
    "prepare",
    "train_a",
    "train_b",
    "evaluate",
    "register",
    "router",
    "simulate",
    "demo",
    "main",
)
# The floors every step pays: the interpreter alone, and MLflow (every step talks to the tracking store).
FLOORS: dict[str, str] = {"python (nothing imported)": "pass", "import mlflow": "import mlflow"}
HEAVY: tuple[str, ...] = ("lightgbm", "sklearn", "matplotlib", "seaborn", "statsmodels", "scipy.stats", "duckdb")
TARGET_S = 2.0

_PROBE = """
import time
{statement}
first_line = time.time()
import json, sys
print(json.dumps({{"first_line": first_line, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


@dataclass(frozen=True)
class StartUp:
    """One start of one step: seconds to its first line of work, CPU seconds of the process, heavy modules."""

    first_line_s: float
    cpu_s: float
    heavy: tuple[str, ...]


def start_once(python: str, statement: str, project: Path) -> StartUp:
    """Start ``python`` in ``project`` running ``statement``; time it up to the line after the statement."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_RUN_ID")}
    code = _PROBE.format(statement=statement, heavy=HEAVY)
    with tempfile.TemporaryFile() as stderr:
        started = time.time()
        proc = subprocess.Popen([python, "-c", code], cwd=project, env=env, stdout=subprocess.PIPE, stderr=stderr)
        stdout = proc.stdout.read() if proc.stdout else b""
        # os.wait4, not Popen.wait: its rusage gives the child's CPU seconds.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{python} -c {statement!r} in {project} failed:\n{stderr.read().decode()[-2000:]}")
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    return StartUp(report["first_line"] - started, usage.ru_utime + usage.ru_stime, tuple(report["heavy"]))


def import_time_s(python: str, module: str, project: Path) -> float:
    """``module``'s cumulative import time, in seconds, from ``python -X importtime``."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"], cwd=project, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} -X importtime -c 'import {module}' failed:\n{done.stderr[-2000:]}")
    pattern = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \|\s*{re.escape(module)}$")
    for line in done.stderr.splitlines():
        found = pattern.match(line)
        if found:
            return int(found.group(1)) / 1e6
    raise RuntimeError(f"-X importtime printed no line for {module}")


@dataclass
class Series:
    """Every repeat of one (code, step): first-line seconds, CPU seconds of the process, import seconds."""

    first_line: list[float]
    cpu: list[float]
    imports: list[float]
    heavy: tuple[str, ...] = ()


def measure(
    projects: Mapping[str, Path], *, python: str, repeats: int, steps: Sequence[str]
) -> dict[tuple[str, str], Series]:
    """(code, step or floor) -> its series; the codes interleaved within each repeat."""
    results: dict[tuple[str, str], Series] = {}
    for repeat in range(repeats):
        for label, statement in FLOORS.items():
            for code, project in projects.items():
                series = results.setdefault((code, label), Series([], [], []))
                started = start_once(python, statement, project)
                series.first_line.append(started.first_line_s)
                series.cpu.append(started.cpu_s)
        for step in steps:
            for code, project in projects.items():
                series = results.setdefault((code, step), Series([], [], []))
                started = start_once(python, f"import steps.{step}", project)
                series.first_line.append(started.first_line_s)
                series.cpu.append(started.cpu_s)
                series.heavy = started.heavy
                series.imports.append(import_time_s(python, f"steps.{step}", project))
        log.info("repeat %d of %d done; %s", repeat + 1, repeats, load_line())
    return results


def tables(results: Mapping[tuple[str, str], Series], codes: Sequence[str], steps: Sequence[str]) -> str:
    """Per step: first line of work and import time per code, after / before, heavy modules, target status."""
    after = codes[-1]
    header = ["step", *(f"{c} first line s" for c in codes)]
    header += [f"{c} CPU s" for c in codes]
    header += [f"{c} import s" for c in codes]
    if len(codes) == 2:
        header.append("after / before")
    header += [*(f"{c} heavy modules at import" for c in codes), f"<= {TARGET_S:.0f} s ({after})"]
    rows = []
    for name in [*FLOORS, *steps]:
        first = [median(results[(c, name)].first_line) for c in codes]
        imports = [
            median(results[(c, name)].imports) if results[(c, name)].imports else float("nan") for c in codes
        ]
        cpu = [median(results[(c, name)].cpu) for c in codes]
        row: list[object] = [name, *first, *cpu, *imports]
        if len(codes) == 2:
            row.append(first[1] / first[0])
        row += [", ".join(results[(c, name)].heavy) or "-" for c in codes]
        row.append(
            f"{'met' if first[-1] <= TARGET_S else 'MISSED'} (CPU: {'met' if cpu[-1] <= TARGET_S else 'MISSED'})"
        )
        rows.append(row)
    return markdown_table(header, rows)


def main(argv: Sequence[str] | None = None) -> str:
    """Measure every step's start-up before and after; print the table."""
    parser = argparse.ArgumentParser(prog="benchmarks.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter to start the steps with")
    parser.add_argument("--code", choices=("head", "worktree"), default="head", help="the 'after' code")
    parser.add_argument("--before", default=BEFORE_REVISION, help="revision of the 'before' code ('' = none)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma list of step modules")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    steps = [s for s in args.steps.split(",") if s]
    load_before = load_line()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        projects: dict[str, Path] = {}
        if args.before:
            worktree = Path(tmp) / "before"
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(worktree), args.before],
                cwd=PROJECT_DIR,
                check=True,
            )
            projects[f"before ({args.before})"] = worktree
        projects[f"after ({args.code} of {git_head()})"] = snapshot_project(Path(tmp) / "after", code=args.code)
        try:
            results = measure(projects, python=args.python, repeats=args.repeats, steps=steps)
        finally:
            if args.before:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(worktree)], cwd=PROJECT_DIR, check=False
                )
    text = "\n".join(
        [
            machine_line(),
            f"interpreter: {args.python}; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}",
            f"{load_before} (before); {load_line()} (after)",
            f"median of {args.repeats} starts per step; first line = process start to the line after the import",
            "",
            tables(results, list(projects), steps),
        ]
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
