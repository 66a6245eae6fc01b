"""`pip install .` and `pip install -e ".[dev]"` on a fresh virtualenv: every package ships, pins come from
requirements*.txt.

The virtualenv sees this interpreter's site-packages, so the already installed pins satisfy the dependencies and
the test measures what it is about (the project's metadata and package list), not a 2-minute download.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from abtest.config import PROJECT_DIR

pytestmark = pytest.mark.e2e

DISTRIBUTION = "abtest-mlflow-movielens"
PACKAGES = ("ab_router", "abtest", "abtest.data", "abtest.experiment.readout", "abtest.experiment.stats", "steps")


def _pins(name: str) -> list[str]:
    lines = (PROJECT_DIR / name).read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _fresh_venv(root: Path) -> Path:
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(root)
    return root / "bin" / "python"


def _installed(python: Path, cwd: Path) -> dict[str, object]:
    """What the venv's interpreter sees from outside the checkout: package files and the declared requirements."""
    probe = (
        "import importlib, importlib.metadata as md, json; "
        f"packages = {list(PACKAGES)!r}; "
        "files = {p: importlib.import_module(p).__file__ for p in packages}; "
        f"print(json.dumps({{'files': files, 'requires': md.requires({DISTRIBUTION!r})}}))"
    )
    out = subprocess.run([str(python), "-c", probe], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _source_copy(root: Path) -> Path:
    """The checkout without its local state: a wheel build writes build/ and *.egg-info beside the sources."""
    local_state = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "mlruns", ".venv")

    def ignored(directory: str, names: list[str]) -> set[str]:
        # data/ at the top holds the user's MovieLens zips (not a package; abtest/data is)
        top_level_data = {"data"} if Path(directory) == PROJECT_DIR else set()
        return set(local_state(directory, names)) | top_level_data

    return Path(shutil.copytree(PROJECT_DIR, root, ignore=ignored))


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pip_install_dot_ships_every_package_with_the_runtime_pins(tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    _pip(python, str(_source_copy(tmp_path / "src")))
    installed = _installed(python, cwd=tmp_path)
    for package, path in installed["files"].items():
        assert "site-packages" in path, f"{package} imported from {path}, not from the installed wheel"
    requires = installed["requires"]
    runtime = [r for r in requires if "extra ==" not in r]
    assert sorted(runtime) == sorted(_pins("requirements.txt"))
    dev = sorted(re.sub(r";.*", "", r).strip() for r in requires if 'extra == "dev"' in r)
    assert dev == sorted(_pins("requirements-test.txt"))
    # The wheel is the library; a step started from it says where the project's entry points run from.
    step = subprocess.run(
        [str(python), "-m", "steps.prepare", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert step.returncode != 0
    assert "MLproject not found" in step.stderr and "run from the project's checkout" in step.stderr


def test_editable_install_with_the_dev_extra_imports_from_the_checkout(tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    source = _source_copy(tmp_path / "src")
    _pip(python, "-e", f"{source}[dev]")
    installed = _installed(python, cwd=tmp_path)
    for package, path in installed["files"].items():
        assert Path(path).is_relative_to(source), f"{package} imported from {path}, not from the source tree"
    step = subprocess.run(
        [str(python), "-m", "steps.prepare", "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "--positive_threshold" in step.stdout  # the parser built from the source tree's MLproject


def test_requirements_dev_is_the_runtime_and_test_pins() -> None:
    # The README's test command installs requirements-dev.txt: it must bring both files, each pin written once.
    assert _pins("requirements-dev.txt") == ["-r requirements.txt", "-r requirements-test.txt"]
    runtime, test = _pins("requirements.txt"), _pins("requirements-test.txt")
    names = [re.split(r"[=<>\[]", pin, maxsplit=1)[0].lower() for pin in runtime + test]
    assert len(names) == len(set(names)), f"a package is pinned twice: {sorted(names)}"
