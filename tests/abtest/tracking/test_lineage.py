"""A "" prepare_run resolves on dataset and split only; the log line shows everything else the chosen run used."""

from __future__ import annotations

import logging

import mlflow
import pytest

from abtest.tracking.lineage import resolve_upstream_run
from abtest.tracking.tags import STEP as STEP_TAG


def test_chosen_prepare_run_is_logged_with_all_its_data_parameters(
    fresh_tracking: str, caplog: pytest.LogCaptureFixture
) -> None:
    with mlflow.start_run() as synthetic:
        mlflow.set_tag(STEP_TAG, "prepare")
        mlflow.log_params(
            {
                "dataset": "ml-100k",
                "split": "temporal",
                "source": "local",
                "data_path": "/tmp/synthetic-ml-100k.zip",
                "positive_threshold": "4",
                "val_frac": "0.1",
                "test_frac": "0.1",
                "seed": "7",
                "source_used": "local",
            }
        )
    with caplog.at_level(logging.INFO, logger="abtest.tracking.lineage"):
        chosen = resolve_upstream_run(
            "prepare", "", {"dataset": "ml-100k", "split": "temporal"}, how_to_make="mlflow run . -e prepare"
        )
    assert chosen == synthetic.info.run_id
    [line] = [r.getMessage() for r in caplog.records if r.name == "abtest.tracking.lineage"]
    assert line == (
        f"using prepare run {chosen} (latest FINISHED with {{'dataset': 'ml-100k', 'split': 'temporal'}}, "
        "whatever its other parameters: data_path=/tmp/synthetic-ml-100k.zip, positive_threshold=4, seed=7, "
        "source=local, source_used=local, test_frac=0.1, val_frac=0.1; pass prepare_run=<run id> to pin one)"
    )
