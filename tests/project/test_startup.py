"""A step imports only what it uses: importing a step module loads no heavy library the step never needs.

Each import runs in a fresh interpreter (``sys.modules`` of this test process holds everything already). The rule
per step is what it does: register, router and main never train, score with a model or plot, so they load none of
LightGBM, scikit-learn, matplotlib, seaborn or statsmodels; prepare builds features with numpy and pandas only; the
training steps load their library when they fit (train_a never LightGBM). The steps whose whole job uses them
(evaluate, simulate, demo) may load them with the module. The timing itself is
benchmarks/startup.py's job.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from abtest.config import PROJECT_DIR

# pyspark is not here: where it is installed, `import mlflow` loads it (mlflow.types.schema); no step can avoid it.
HEAVY: tuple[str, ...] = ("lightgbm", "sklearn", "matplotlib", "seaborn", "statsmodels")
# step module -> the heavy libraries its import may load (everything else in HEAVY must stay unloaded)
ALLOWED_AT_IMPORT: dict[str, frozenset[str]] = {
    "prepare": frozenset(),
    "train_a": frozenset(),
    "train_b": frozenset(),
    "register": frozenset(),
    "router": frozenset(),
    "promote": frozenset(),
    "score": frozenset(),  # the router's libraries load with the router
    "main": frozenset(),
    "demo": frozenset({"statsmodels"}),
    "analyze": frozenset({"statsmodels"}),
    "simulate": frozenset({"sklearn", "statsmodels", "matplotlib"}),
    "evaluate": frozenset(HEAVY),
}
_PROBE = "import json, sys; import {modules}; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"


def _groups() -> dict[frozenset[str], list[str]]:
    """Steps by the libraries they may load. What a group's modules load together includes what each loads
    alone, so one interpreter per group checks every member (a few starts instead of one per step)."""
    groups: dict[frozenset[str], list[str]] = {}
    for step, allowed in ALLOWED_AT_IMPORT.items():
        if allowed != frozenset(HEAVY):  # a step allowed everything cannot break the rule
            groups.setdefault(allowed, []).append(step)
    return groups


@pytest.fixture(scope="module")
def loaded_at_import() -> dict[frozenset[str], tuple[list[str], set[str]]]:
    """Allowed set -> (its steps, the heavy libraries importing them all loaded), fresh interpreters at once."""
    started = {
        allowed: subprocess.Popen(
            [sys.executable, "-c", _PROBE.format(modules=", ".join(f"steps.{s}" for s in steps), heavy=HEAVY)],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for allowed, steps in _groups().items()
    }
    loaded = {}
    for allowed, proc in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"importing {_groups()[allowed]} failed:\n{stderr[-2000:]}"
        loaded[allowed] = (_groups()[allowed], set(json.loads(stdout.strip().splitlines()[-1])))
    return loaded


def test_importing_a_step_loads_only_the_heavy_libraries_it_uses(
    loaded_at_import: dict[frozenset[str], tuple[list[str], set[str]]],
) -> None:
    # the steps that must not load a library; {} when every step keeps to its rule
    offenders = {
        f"steps {steps} may load {sorted(allowed)}": sorted(loaded - allowed)
        for allowed, (steps, loaded) in loaded_at_import.items()
        if loaded - allowed
    }
    assert offenders == {}


def test_every_step_module_is_checked() -> None:
    modules = {path.stem for path in (PROJECT_DIR / "steps").glob("*.py")} - {"__init__", "cli"}
    assert modules == set(ALLOWED_AT_IMPORT)


def test_the_probe_sees_a_heavy_import() -> None:
    # the check is only worth something if the same probe reports a library that is loaded
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules="abtest.policies.plots, matplotlib", heavy=HEAVY)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["matplotlib"]
