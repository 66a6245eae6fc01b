"""The `prepare` step: in-process runs on synthetic zips, atomic output, determinism, and one `mlflow run`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from ab_router.schema import FEATURE_COLUMNS, LABEL, USER_ID
from abtest.config import PROJECT_DIR, SPLITS
from abtest.data.movielens import ML1M_OCCUPATIONS
from abtest.tracking.lineage import load_prepared
from abtest.tracking.tags import STEP as STEP_TAG
from steps.prepare import check_params, main, write_prepared
from tests.fixtures.data import SMALL_ML1M, SMALL_ML100K


def test_prepared_run_has_tables_features_and_lineage(prepared_run: str) -> None:
    prepared = load_prepared(prepared_run)
    run = mlflow.get_run(prepared_run)
    assert run.info.status == "FINISHED"
    assert run.data.tags[STEP_TAG] == "prepare"
    assert run.data.params["source_used"] == "local"
    assert run.data.params["split"] == "random"
    assert len(run.data.params["raw_sha256"]) == 64
    total = sum(len(prepared.splits[s]) for s in SPLITS)
    assert total == SMALL_ML100K["n_ratings"]
    assert len(prepared.users) == SMALL_ML100K["n_users"]
    assert len(prepared.items) == SMALL_ML100K["n_items"]
    assert len(prepared.test) == round(0.1 * total) == run.data.metrics["test_rows"]
    for name in SPLITS:
        frame = prepared.splits[name]
        assert set(FEATURE_COLUMNS) <= set(frame.columns)
        assert frame[LABEL].isin([0, 1]).all()
        assert run.data.metrics[f"{name}_positive_rate"] == pytest.approx(frame[LABEL].mean())
    contexts = sorted(d.tags[0].value for d in run.inputs.dataset_inputs)
    assert contexts == sorted(SPLITS)
    assert all(d.dataset.digest for d in run.inputs.dataset_inputs)
    profile = mlflow.artifacts.load_dict(f"runs:/{prepared_run}/profile.json")
    assert profile["dataset"]["ratings"] == SMALL_ML100K["n_ratings"]
    acquisition = mlflow.artifacts.load_dict(f"runs:/{prepared_run}/acquisition.json")
    assert acquisition["source_used"] == "local" and acquisition["attempts"] == []


def test_prepare_reads_the_ml1m_layout_with_temporal_split(synthetic_ml1m_zip: Path) -> None:
    run_id = main(["--dataset", "ml-1m", "--source", "local", "--data_path", str(synthetic_ml1m_zip)])
    prepared = load_prepared(run_id)
    assert sum(len(prepared.splits[s]) for s in SPLITS) == SMALL_ML1M["n_ratings"]
    assert prepared.train["timestamp"].max() < prepared.val["timestamp"].min()
    assert prepared.val["timestamp"].max() < prepared.test["timestamp"].min()
    assert set(prepared.users["occupation"]) <= set(ML1M_OCCUPATIONS)


def test_autoint_split_drops_neutral_ratings(synthetic_ml100k_zip: Path) -> None:
    run_id = main(["--source", "local", "--data_path", str(synthetic_ml100k_zip), "--split", "autoint"])
    prepared = load_prepared(run_id)
    for frame in prepared.splits.values():
        assert not frame["rating"].eq(3).any()
        assert (frame[LABEL] == (frame["rating"] > 3)).all()
    sizes = np.array([len(prepared.splits[s]) for s in SPLITS])
    assert sizes / sizes.sum() == pytest.approx([0.8, 0.1, 0.1], abs=1e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "ml-20m"], "dataset must be one of"),
        (["--source", "kaggle"], "source must be one of"),
        (["--split", "by_user"], "split must be one of"),
        (["--val_frac", "0.6", "--test_frac", "0.5"], "val_frac \\+ test_frac must be below 1"),
        (["--positive_threshold", "6"], "positive_threshold must be a rating 1..5"),
        (["--source", "pypi", "--data_path", "x.zip"], "data_path is read only with source=local"),
    ],
)
def test_bad_parameters_fail_before_a_run_opens(argv: list[str], message: str) -> None:
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(ValueError, match=message):
        main(argv)
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before


def test_check_params_accepts_the_mlproject_defaults() -> None:
    from steps.cli import parse_params

    check_params(parse_params("prepare", []))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_parameters_give_byte_identical_outputs(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    from abtest.data.movielens import read_movielens
    from abtest.data.split import split_interactions
    from abtest.features.build import build_features
    from steps.prepare import data_profile

    def prepare_into(out: Path) -> Path:
        tables = read_movielens(synthetic_ml100k_zip, dataset="ml-100k")
        splits = split_interactions(
            tables.interactions, mode="random", positive_threshold=4, val_frac=0.1, test_frac=0.1, seed=3
        )
        features = build_features(splits, tables.users, tables.items, seed=3)
        return write_prepared(out, tables=tables, features=features, profile=data_profile(tables, splits))

    first = _digest(prepare_into(tmp_path / "a"))
    second = _digest(prepare_into(tmp_path / "b"))
    assert len(first) == 9
    assert first == second


def test_write_prepared_leaves_nothing_behind_when_it_fails(tmp_path: Path) -> None:
    one_row = pd.DataFrame({USER_ID: [1]})
    tables = SimpleNamespace(users=one_row, items=one_row)
    # The split tables are written, then the user feature table is not a frame: failure part-way through.
    features = SimpleNamespace(splits={"train": one_row}, user_features="not a frame")
    with pytest.raises(AttributeError):
        write_prepared(tmp_path / "out", tables=tables, features=features, profile={})
    assert list(tmp_path.iterdir()) == []


def test_write_prepared_refuses_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        write_prepared(tmp_path / "out", tables=None, features=None, profile={})


@pytest.mark.e2e
def test_mlflow_run_prepare_entry_point(synthetic_ml100k_zip: Path, fresh_tracking: str) -> None:
    env = {**os.environ, "ABTEST_GROUPLENS_URL": "http://127.0.0.1:9"}  # never the real host
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID too; `mlflow run` refuses both it and the name.
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(PROJECT_DIR),
            "-e",
            "prepare",
            "--env-manager",
            "local",
            "-P",
            "source=local",
            "-P",
            f"data_path={synthetic_ml100k_zip}",
            "-P",
            "split=temporal",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags[STEP_TAG] == "prepare"
    assert run.data.tags["mlflow.project.entryPoint"] == "prepare"
    assert run.data.params["source"] == "local"
    assert run.data.params["source_used"] == "local"
    assert run.data.params["data_path"] == str(synthetic_ml100k_zip)
    prepared = load_prepared(run.info.run_id)
    assert [len(prepared.splits[s]) for s in SPLITS] == [run.data.metrics[f"{s}_rows"] for s in SPLITS]
    assert sum(len(prepared.splits[s]) for s in SPLITS) == SMALL_ML100K["n_ratings"]
    assert len(prepared.users) == SMALL_ML100K["n_users"]
    assert json.loads(json.dumps(prepared.feature_defaults)) == prepared.feature_defaults
