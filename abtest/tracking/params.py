"""Parameters a step resolved after `mlflow run` logged them, kept where a reader finds them.

``mlflow run`` logs every entry-point parameter, including "" defaults (``prepare_run``, ``dataset``, ``split``,
``seed``, ...), before the step starts, and MLflow params cannot change. The value the step actually used is then
kept in the tag ``abtest.resolved.<name>``; :func:`effective_params` gives a run's params with those values filled
in, which is what a consumer (evaluate's cross-validation, register's lineage check, a benchmark) should read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from abtest.tracking import tags


def log_resolved_params(params: Mapping[str, Any]) -> None:
    """Log params; one that `mlflow run` already logged with another value (its "" default) becomes a tag."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_resolved_params needs an active run")
    logged = MlflowClient().get_run(run.info.run_id).data.params
    new = {k: str(v) for k, v in params.items() if k not in logged}
    changed = {
        f"{tags.RESOLVED_PREFIX}{k}": str(v) for k, v in params.items() if k in logged and logged[k] != str(v)
    }
    mlflow.log_params(new)
    if changed:
        mlflow.set_tags(changed)


def effective_params(run: Run) -> dict[str, str]:
    """A training run's params with the values it actually used (see the module docstring)."""
    resolved = {
        key.removeprefix(tags.RESOLVED_PREFIX): value
        for key, value in run.data.tags.items()
        if key.startswith(tags.RESOLVED_PREFIX)
    }
    return {**run.data.params, **resolved}
