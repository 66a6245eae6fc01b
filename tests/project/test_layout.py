"""The layout's rules, checked on the source: who may import whom, where tag names and pins are written."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from abtest.config import PROJECT_DIR

# package -> the first-party packages it must not import
FORBIDDEN_IMPORTS: dict[str, tuple[str, ...]] = {
    "ab_router": ("abtest", "steps", "team", "benchmarks", "tests"),
    "abtest": ("steps", "team", "benchmarks", "tests"),
    "steps": ("team", "benchmarks", "tests"),
}
TAGS_MODULE = PROJECT_DIR / "abtest" / "tracking" / "tags.py"


def _python_files(package: str) -> list[Path]:
    return sorted((PROJECT_DIR / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    return imported


def test_each_package_imports_only_the_layers_below_it() -> None:
    violations = [
        f"{path.relative_to(PROJECT_DIR)} imports {sorted(_imported_packages(path) & set(forbidden))}"
        for package, forbidden in FORBIDDEN_IMPORTS.items()
        for path in _python_files(package)
        if _imported_packages(path) & set(forbidden)
    ]
    assert violations == []


def test_steps_holds_only_entry_points_and_the_parser_builder() -> None:
    entry_points = set(yaml.safe_load((PROJECT_DIR / "MLproject").read_text())["entry_points"])
    modules = {path.stem for path in _python_files("steps")} - {"__init__"}
    assert modules == entry_points | {"cli"}


def test_tag_names_are_written_only_in_the_tags_module() -> None:
    # a string literal that starts a tag name ("abtest.step", f"abtest.{...}") outside abtest/tracking/tags.py
    literal = re.compile(r"""(?<![\w.])f?["']abtest\.""")
    writers = [
        path.relative_to(PROJECT_DIR).as_posix()
        for package in ("ab_router", "abtest", "steps", "team")
        for path in _python_files(package)
        if path != TAGS_MODULE and literal.search(path.read_text())
    ]
    assert writers == []


def test_every_environment_file_reads_the_one_pin_file() -> None:
    python_env = yaml.safe_load((PROJECT_DIR / "python_env.yaml").read_text())
    conda = yaml.safe_load((PROJECT_DIR / "conda.yaml").read_text())
    pip_section = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert python_env["dependencies"] == ["-r requirements.txt"]
    assert pip_section == ["-r requirements.txt"]
    assert 'dependencies = { file = ["requirements.txt"] }' in (PROJECT_DIR / "pyproject.toml").read_text()
    # one Python version everywhere (python_env.yaml's exact patch release, which pyenv installs offline)
    assert f"python={python_env['python']}" in conda["dependencies"]
