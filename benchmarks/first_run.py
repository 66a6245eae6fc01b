"""First-run benchmark: the README's first command on a fresh machine, end to end (issue 15: <= 2 min).

"Fresh machine", simulated on this one in temp directories, for each revision measured:
- a fresh ``git clone`` of the checkout at that revision (its README's first command is what runs);
- a Python 3.11.7 with nothing installed: a copy of pyenv's 3.11.7 without its site-packages (pip from
  ``ensurepip``), first on PATH, so ``pip install`` and ``uv pip install --system`` install into it; MLflow's
  virtualenv manager still finds pyenv's 3.11.7 as the README assumes;
- empty caches: ``PIP_CACHE_DIR``, ``UV_CACHE_DIR``, ``ABTEST_CACHE_DIR`` (the ML-100K download) and
  ``MLFLOW_ENV_ROOT`` (no ``~/.mlflow/envs`` entry) in the temp dir, and an empty SQLite store.

The command's ``&&`` parts run one after the other (timed each); "first result" is the moment the prepare run
finished, "total" the end of ``main``, both from the command's start. "Before" is the code and README of
ec6154f (``pip install`` + the default virtualenv manager), "after" the last commit (uv).

    python -m benchmarks.first_run                       # before (ec6154f) and after (HEAD), in one session
    python -m benchmarks.first_run --revisions HEAD      # after only
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import PROJECT_DIR, load_line, machine_line, markdown_table, run_measured

log = logging.getLogger("benchmarks.first_run")

BEFORE_REVISION = "ec6154f"
TARGET_S = 120.0
PYENV_PYTHON = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions" / "3.11.7"
# MLflow and project variables a caller's shell may hold: each would point the run at another store or run.
_DROPPED_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "VIRTUAL_ENV", "PYTHONPATH")


@dataclass(frozen=True)
class FirstRun:
    """One revision's first command: each ``&&`` part's wall and CPU seconds, first result and total (wall)."""

    revision: str
    command: str
    parts: tuple[tuple[str, float, float], ...]
    first_result_s: float
    total_s: float
    load_before: str
    load_after: str


def readme_first_command(readme: str) -> str:
    """The README's first command: the first non-comment line of its first ```bash block."""
    block = re.search(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    if block is None:
        raise ValueError("README.md has no ```bash block holding the first command")
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"README.md's first ```bash block holds no command: {block.group(1)!r}")
    return lines[0]


def command_parts(command: str) -> list[str]:
    """The ``&&``-separated parts of a one-line shell command."""
    return [part.strip() for part in command.split("&&")]


def fresh_python(dest: Path) -> Path:
    """A Python 3.11.7 install with only pip: pyenv's copied without site-packages; returns its bin dir."""
    if not (PYENV_PYTHON / "bin" / "python3.11").exists():
        raise FileNotFoundError(f"pyenv's Python 3.11.7 is not at {PYENV_PYTHON} (the README assumes it)")
    site = Path("lib") / "python3.11" / "site-packages"

    def skip(directory: str, names: list[str]) -> list[str]:
        relative = Path(directory).relative_to(PYENV_PYTHON)
        return list(names) if relative == site else [n for n in names if n == "__pycache__"]

    shutil.copytree(PYENV_PYTHON, dest, symlinks=True, ignore=skip)
    subprocess.run(
        [str(dest / "bin" / "python3.11"), "-m", "ensurepip", "--default-pip"], check=True, capture_output=True
    )
    return dest / "bin"


def clone_at(revision: str, dest: Path) -> Path:
    """A fresh clone of the checkout, checked out at ``revision``."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(PROJECT_DIR), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", revision], cwd=dest, check=True)
    return dest


def fresh_env(root: Path, python_bin: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: the fresh Python first on PATH, every cache and store empty."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    for name in ("pip-cache", "uv-cache", "abtest-cache", "mlflow-envs"):
        (root / name).mkdir()
    env.update(
        PATH=f"{python_bin}{os.pathsep}{env.get('PATH', '')}",
        PIP_CACHE_DIR=str(root / "pip-cache"),
        UV_CACHE_DIR=str(root / "uv-cache"),
        ABTEST_CACHE_DIR=str(root / "abtest-cache"),
        MLFLOW_ENV_ROOT=str(root / "mlflow-envs"),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'store.db'}",
        MLFLOW_REGISTRY_URI=f"sqlite:///{root / 'store.db'}",
    )
    return env


def run_first_command(revision: str, root: Path) -> FirstRun:
    """Clone ``revision`` into ``root``, run its README's first command as a newcomer would, and time it."""
    python_bin = fresh_python(root / "python")
    project = clone_at(revision, root / "abtest-mlflow-movielens")
    command = readme_first_command((project / "README.md").read_text())
    env = fresh_env(root, python_bin)
    load_before = load_line()
    log.info("%s: %s", revision, command)
    started = time.time()
    parts = []
    for part in command_parts(command):
        # CPU = user + system seconds of the whole process tree (it waits for every child), which a loaded
        # shared machine stretches far less than wall time.
        measured = run_measured(["bash", "-c", part], env=env, cwd=project)
        parts.append((part, measured.wall_s, measured.cpu_s))
        log.info("%s: `%s` took %.1f s (CPU %.1f s)", revision, part, measured.wall_s, measured.cpu_s)
    first_result, finished = _run_times(env["MLFLOW_TRACKING_URI"])
    return FirstRun(
        revision=revision,
        command=command,
        parts=tuple(parts),
        first_result_s=first_result - started,
        total_s=finished - started,
        load_before=load_before,
        load_after=load_line(),
    )


def _run_times(tracking_uri: str) -> tuple[float, float]:
    """When the store's prepare run and its main run ended (epoch seconds)."""
    from mlflow.tracking import MlflowClient  # here: the table helpers stay importable without MLflow

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    ends = {run.data.tags.get("mlflow.project.entryPoint"): run.info.end_time for run in runs}
    if not ends.get("prepare") or not ends.get("main"):
        raise RuntimeError(f"the store at {tracking_uri} has no finished prepare and main runs: {ends}")
    return ends["prepare"] / 1000, ends["main"] / 1000


def tables(results: Sequence[FirstRun]) -> str:
    """The first command's parts, first result and total per revision, with the target's status."""
    lines = []
    for result in results:
        lines += [
            f"{result.revision}: `{result.command}`",
            f"{result.load_before} (before); {result.load_after} (after)",
            "",
            markdown_table(["part", "wall s", "CPU s"], [[f"`{p}`", wall, cpu] for p, wall, cpu in result.parts]),
            "",
        ]
    rows = [
        [
            r.revision,
            sum(wall for _, wall, _ in r.parts[:-1]),
            r.first_result_s,
            r.total_s,
            sum(cpu for _, _, cpu in r.parts),
            "met" if r.total_s <= TARGET_S else "MISSED",
            "met" if sum(cpu for _, _, cpu in r.parts) <= TARGET_S else "MISSED",
        ]
        for r in results
    ]
    header = ["revision", "installs wall s", "first result wall s", "total wall s", "total CPU s"]
    header += [f"<= {TARGET_S:.0f} s (wall)", "by CPU"]
    lines.append(markdown_table(header, rows))
    if len(results) == 2:
        lines.append(f"\ntotal after / before: {results[1].total_s / results[0].total_s:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """Measure the README's first command at each revision, one after the other, and print the tables."""
    parser = argparse.ArgumentParser(prog="benchmarks.first_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", default=f"{BEFORE_REVISION},HEAD", help="comma list, measured in order")
    parser.add_argument("--workdir", type=Path, default=None, help="keep clones, caches and stores here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = []
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        base = args.workdir or Path(tmp)
        for index, revision in enumerate(args.revisions.split(",")):
            root = base / f"{index}-{revision}"
            root.mkdir(parents=True)
            results.append(run_first_command(revision, root))
    text = "\n".join([machine_line(), "", tables(results)])
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
