"""The first-run benchmark's bookkeeping: which command it runs, how it reports (the run itself is on demand)."""

from __future__ import annotations

import pytest

from abtest.config import PROJECT_DIR
from benchmarks.first_run import FirstRun, command_parts, readme_first_command, tables


def test_the_readme_first_command_is_parsed_into_its_parts() -> None:
    command = readme_first_command((PROJECT_DIR / "README.md").read_text())
    assert command_parts(command) == [
        "python -m pip install -r requirements-uv.txt",
        "uv pip install --system -r requirements.txt",
        "mlflow run . -e main --env-manager uv",
    ]


def test_a_readme_without_a_command_block_is_refused() -> None:
    with pytest.raises(ValueError, match="no ```bash block"):
        readme_first_command("# title\n\nno commands here\n")


def test_tables_judge_the_total_against_two_minutes() -> None:
    before = FirstRun("old", "a && b", (("a", 100.0, 60.0), ("b", 300.0, 140.0)), 250.0, 400.0, "l", "l")
    after = FirstRun("new", "c && d", (("c", 10.0, 5.0), ("d", 100.0, 90.0)), 40.0, 110.0, "l", "l")
    text = tables([before, after])
    assert "| old | 100.0 | 250.0 | 400.0 | 200.0 | MISSED | MISSED |" in text
    assert "| new | 10.000 | 40.000 | 110.0 | 95.000 | met | met |" in text
    assert "total after / before: 0.275" in text
