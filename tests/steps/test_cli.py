"""MLproject is the single source of parameter defaults; the step parsers must follow it exactly."""

from __future__ import annotations

import pytest

from steps.cli import build_parser, entry_points, parameter_defaults, parse_params


def test_every_entry_point_parses_its_own_defaults() -> None:
    for name in entry_points():
        if name == "main":
            continue
        namespace = parse_params(name, [])
        assert {k: str(v) for k, v in vars(namespace).items()} == parameter_defaults(name)


def test_mistyped_parameter_is_rejected_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("prepare").parse_args(["--seed", "forty-two"])
    assert "parameter seed must be int, got 'forty-two'" in capsys.readouterr().err


def test_unknown_entry_point_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="has no entry point 'nope'"):
        parse_params("nope", [])
