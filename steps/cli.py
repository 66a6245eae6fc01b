"""The thin layer between MLproject and the step modules.

MLproject is the one place a parameter's type and default are written. Each step builds its argument parser from
its own MLproject entry point, so ``python -m steps.train_b``, ``mlflow run . -e train_b`` and a test calling
``steps.train_b.main(["--num_leaves", "63"])`` all see the same defaults, and an unknown or mistyped parameter
is rejected with the entry point's parameter list.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

import yaml

from abtest.config import project_file

# Random seeds end up in numpy, scikit-learn (random_state < 2**32) and LightGBM (a C int), so the common range.
MAX_SEED = 2**31 - 1

_CASTS = {"int": int, "float": float, "string": str, "str": str, "path": str, "uri": str}


@cache
def entry_points() -> dict[str, dict[str, Any]]:
    """MLproject's entry points as written, keyed by name."""
    spec = yaml.safe_load(project_file("MLproject").read_text())
    return spec["entry_points"]


def entry_point_parameters(entry_point: str) -> dict[str, dict[str, Any]]:
    """Parameters of one entry point: name -> {"type": ..., "default": ...}."""
    try:
        params = entry_points()[entry_point].get("parameters", {}) or {}
    except KeyError:
        raise KeyError(f"MLproject has no entry point {entry_point!r}; it has {sorted(entry_points())}") from None
    return {name: (spec if isinstance(spec, dict) else {"type": spec}) for name, spec in params.items()}


def parameter_defaults(entry_point: str) -> dict[str, str]:
    """Defaults of an entry point as MLflow stores params: strings (a parameter without default is left out)."""
    return {
        name: str(spec["default"])
        for name, spec in entry_point_parameters(entry_point).items()
        if spec.get("default") is not None
    }


def parameter_type(kind: str) -> type:
    """The Python type a parameter of MLproject type ``kind`` converts to (str for MLflow's string-like types)."""
    return _CASTS.get(kind, str)


def _cast(kind: str, name: str):
    cast = parameter_type(kind)

    def convert(text: str):
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"parameter {name} must be {kind}, got {text!r}") from None

    return convert


def build_parser(entry_point: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser whose flags (``--<param>``), types and defaults come from MLproject."""
    parser = argparse.ArgumentParser(prog=f"steps.{entry_point}", description=description)
    for name, spec in entry_point_parameters(entry_point).items():
        kind = spec.get("type", "string")
        default = spec.get("default")
        parser.add_argument(
            f"--{name}",
            type=_cast(kind, name),
            default=None if default is None else _cast(kind, name)(str(default)),
            required=default is None,
            help=f"{kind}, default {default!r}",
        )
    return parser


def parse_params(entry_point: str, argv: Sequence[str] | None = None, description: str | None = None):
    """Parse a step's parameters (``argv`` None = sys.argv) into a namespace with MLproject's defaults."""
    return build_parser(entry_point, description).parse_args(argv)


def configure_logging(level: int = logging.INFO) -> None:
    """One log format for every step, so the `mlflow run` console output reads as one story."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # MLflow and its HTTP stack are chatty at INFO; the step's own messages are what a user wants to see.
    for noisy in ("urllib3", "alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def inherit_defaults(namespace: argparse.Namespace, owner: str, names: Sequence[str]) -> argparse.Namespace:
    """Fill parameters left empty ("") with the owning entry point's default.

    A parameter that several entry points accept (``dataset`` in prepare and in the trainers, ``model_name`` in
    register and router, ...) has its default written once, in the entry point that owns it; the others declare
    it with default "" and resolve it here.

    A value that is given is converted to the owner's type here, so ``seed=abc`` fails before a run starts with
    a message naming the parameter and the rule, not deep inside a step with ``int()``'s.
    """
    owner_defaults = parameter_defaults(owner)
    owner_params = entry_point_parameters(owner)
    for name in names:
        kind = owner_params[name].get("type", "string")
        value = getattr(namespace, name)
        if value in ("", None):
            setattr(namespace, name, _cast(kind, name)(owner_defaults[name]))
            continue
        try:
            setattr(namespace, name, _cast(kind, name)(str(value)))
        except argparse.ArgumentTypeError:
            raise ValueError(
                f'parameter {name} must be {kind} or "" (= {owner}\'s default {owner_defaults[name]}), '
                f"got {value!r}"
            ) from None
    return namespace


def check_seed(seed: int, *, name: str = "seed") -> int:
    """``seed`` if it is one every consumer accepts, else a ValueError naming the parameter and the range."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"parameter {name} must be an integer from 0 to {MAX_SEED}, got {seed}")
    return seed
