"""Lint and format are part of the suite, so `.ci/run` fails on them like on any other regression."""

from __future__ import annotations

import subprocess
import sys

from abtest.config import PROJECT_DIR


def test_ruff_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
