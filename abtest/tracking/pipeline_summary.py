"""What `main` records on its own run: the step table (as it goes, so a killed main shows how far it got) and
a summary of its children (their ``abtest.*`` tags and the headline steps' metrics), so the parent run answers
"what did this pipeline decide and register" without opening the children."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from abtest.tracking import tags
from abtest.tracking.pipeline import KILLED, RAN, REUSED, StepRecord

# Steps whose metrics are copied onto main's run (prefixed with the entry point) as the headline numbers.
SUMMARY_METRIC_STEPS: tuple[str, ...] = ("evaluate", "simulate")
# Bookkeeping tags of the children, not results: left out of the summary.
_NOT_SUMMARISED_TAGS = (tags.STEP, tags.CODE_VERSION, tags.UPSTREAM, tags.HOST, tags.PID, tags.PROCESS_START)


def step_table(records: Sequence[StepRecord]) -> pd.DataFrame:
    """The step table as a frame: entry point, run id, outcome, duration, reason (for failures)."""
    columns = ["entry_point", "run_id", "outcome", "duration_s", "reason"]
    frame = pd.DataFrame([vars(r) for r in records], columns=columns)
    return frame.assign(duration_s=frame["duration_s"].round(2))


def record_step(record: StepRecord) -> None:
    """Tag and time one decided step on the active (main's) run."""
    # Tagged as soon as a step is decided, so a main killed half-way still shows how far it got.
    mlflow.set_tags(
        {
            tags.step_run_id(record.entry_point): record.run_id or "",
            tags.step_outcome(record.entry_point): record.outcome,
        }
    )
    mlflow.log_metric(f"duration_s.{record.entry_point}", record.duration_s)


def log_step_table(records: Sequence[StepRecord]) -> pd.DataFrame:
    """The whole step table as artifacts (CSV, markdown) and counts of steps ran and reused; returns it."""
    table = step_table(records)
    mlflow.log_text(table.to_csv(index=False), "pipeline/steps.csv")
    mlflow.log_text(markdown_table(table), "pipeline/steps.md")
    mlflow.log_metrics(
        {
            "steps_ran": float((table["outcome"] == RAN).sum()),
            "steps_reused": float((table["outcome"] == REUSED).sum()),
            "steps_killed": float((table["outcome"] == KILLED).sum()),
        }
    )
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (pandas' to_markdown needs tabulate, which is not a dependency)."""
    rows = [list(map(str, frame.columns)), ["---"] * frame.shape[1]]
    rows += [
        ["" if pd.isna(v) else str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def child_summary(run_ids: Mapping[str, str], client: MlflowClient) -> tuple[dict[str, str], dict[str, float]]:
    """Tags and metrics to copy onto main: each child's ``abtest.*`` tags, and headline steps' metrics.

    The evaluation decision, the registered versions and the router version are tags the steps set on their own
    runs; main repeats them as ``abtest.<entry>.<tag>`` so the parent run answers "what did this pipeline decide
    and register" without opening the children.
    """
    summary_tags: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for entry, run_id in run_ids.items():
        run = client.get_run(run_id)
        for key, value in run.data.tags.items():
            if key.startswith(tags.PREFIX) and key not in _NOT_SUMMARISED_TAGS:
                summary_tags[tags.summarised(entry, key)] = tags.cut(value)
        if entry in SUMMARY_METRIC_STEPS:
            metrics.update({f"{entry}.{key}": value for key, value in run.data.metrics.items()})
    return summary_tags, metrics
