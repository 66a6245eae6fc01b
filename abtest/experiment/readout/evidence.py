"""The readout as MLflow evidence: per-day values as metric histories (step = day) and the tags `promote` reads.

`analyze` and `simulate` log the same readout the same way, so the MLflow UI plots a simulated experiment and a
real one alike and `promote` can act on either.
"""

from __future__ import annotations

import math
import time

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from abtest.experiment.readout.experiment import RecordsReadout
from abtest.tracking import tags

# MLflow's log_batch takes at most 1000 metrics per call.
BATCH_METRICS = 1000


def log_daily_histories(readout: RecordsReadout) -> int:
    """Every numeric per-day column as metric ``daily_<column>`` with step = day; returns the number logged."""
    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"daily_{column}", float(value), now, int(day))
        for column in readout.daily.columns
        if column != "day"
        for day, value in zip(readout.daily["day"], readout.daily[column], strict=True)
        if isinstance(value, int | float) and math.isfinite(value)
    ]
    client = MlflowClient()
    for start in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH_METRICS])
    return len(metrics)


def readout_tags(readout: RecordsReadout) -> dict[str, str]:
    """The run tags `promote` and the MLflow UI read."""
    return {
        tags.DECISION: tags.cut(readout.decision),
        tags.WINNER: readout.winner,
        tags.HEALTHY: str(readout.healthy).lower(),
        tags.HEALTH_FAILURES: ",".join(readout.health_failures),
        tags.GUARDRAILS_HELD: str(readout.guardrails_held).lower(),
        tags.PRIMARY_METRIC: readout.plan.primary_metric,
        tags.PLAN_OVERRIDDEN: str(readout.plan_overridden).lower(),
    }
