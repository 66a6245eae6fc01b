"""docs/reference.py: docs/reference.md is what MLproject generates, so the parameter docs cannot drift."""

from __future__ import annotations

import importlib.util
import re

import yaml

from abtest.config import PROJECT_DIR


def _load_generator():
    # docs/ is not a package: load the generator from its file.
    spec = importlib.util.spec_from_file_location("docs_reference", PROJECT_DIR / "docs" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_generator()


def test_reference_md_is_what_mlproject_generates() -> None:
    mlproject_text = (PROJECT_DIR / "MLproject").read_text()
    reference_text = (PROJECT_DIR / "docs" / "reference.md").read_text()
    assert reference.staleness(mlproject_text, reference_text) == ""


def test_every_entry_point_and_parameter_is_in_reference_md() -> None:
    entry_points = yaml.safe_load((PROJECT_DIR / "MLproject").read_text())["entry_points"]
    reference_text = (PROJECT_DIR / "docs" / "reference.md").read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", reference_text, flags=re.MULTILINE | re.DOTALL))
    assert set(sections) == set(entry_points)
    for name, spec in entry_points.items():
        rows = set(re.findall(r"^\| `([^`]+)` \|", sections[name], flags=re.MULTILINE))
        assert rows == set(spec.get("parameters") or {}), name


def test_render_reads_types_defaults_and_line_comments() -> None:
    mlproject_text = """\
name: tiny
entry_points:
  # Notes on the step.
  step:
    parameters:
      mode: {type: string, default: a}   # a | b
      tag: {type: string, default: "x#y"}
      path: {type: string, default: ""}  # "" = data/<dataset>.zip
      count: int
    command: "python -m steps.step --mode {mode}"
"""
    rendered = reference.render(mlproject_text)
    assert "From MLproject: Notes on the step." in rendered
    assert "| `mode` | string | `a` | a \\| b |" in rendered
    assert "| `tag` | string | `x#y` |  |" in rendered
    assert '| `path` | string | `""` | "" = data/&lt;dataset>.zip |' in rendered
    assert "| `count` | int | required |  |" in rendered
