"""The reuse rule of abtest/tracking/reuse.py: values compared as MLflow stores them, the cache key's mismatch
reasons, and the code version (git commit plus a hash of the relevant changes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from abtest.tracking.pipeline import Step
from abtest.tracking.reuse import CacheKey, code_version, stored_value


def test_values_are_compared_as_mlflow_stores_them() -> None:
    assert stored_value("") == "''"
    assert stored_value(63) == "63"
    assert stored_value("a b") == "'a b'"
    assert stored_value("/tmp/x.zip") == "/tmp/x.zip"


def test_cache_key_explains_a_mismatch() -> None:
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("abtest-tests").experiment_id
    run = client.create_run(
        experiment_id, tags={MLFLOW_PROJECT_ENTRY_POINT: "train_b", "abtest.code_version": "c1"}
    )
    upstream = {"prepare": "p1"}
    client.set_tag(run.info.run_id, "abtest.upstream", '{"prepare":"p1"}')
    for name, value in {"prepare_run": "p1", "num_leaves": "31", "seed": "42"}.items():
        client.log_param(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id, "FINISHED")
    key = CacheKey.build(
        Step("train_b", upstream=("prepare",)),
        defaults={"prepare_run": "", "num_leaves": "31", "seed": "42"},
        passed={"num_leaves": "63", "prepare_run": "p1"},
        upstream_runs=upstream,
        code_version="c1",
    )
    assert key.mismatch(client.get_run(run.info.run_id)) == "params (stored, wanted) {'num_leaves': ('31', '63')}"
    assert (
        CacheKey.build(
            Step("train_b", upstream=("prepare",)),
            defaults={"prepare_run": "", "num_leaves": "31", "seed": "42"},
            passed={"prepare_run": "p1"},
            upstream_runs=upstream,
            code_version="c2",
        ).mismatch(client.get_run(run.info.run_id))
        == "code version 'c1' != 'c2'"
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_is_commit_plus_hash_of_relevant_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "steps").mkdir(parents=True)
    (repo / "steps" / "train.py").write_text("x = 1\n")
    (repo / "MLproject").write_text("name: t\n")
    (repo / "README.md").write_text("hi\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    commit = _git(repo, "rev-parse", "HEAD")
    assert code_version(repo) == commit

    (repo / "README.md").write_text("docs do not change results\n")
    assert code_version(repo) == commit

    (repo / "steps" / "train.py").write_text("x = 2\n")
    edited = code_version(repo)
    assert edited.startswith(commit + "+")
    (repo / "steps" / "new.py").write_text("y = 1\n")  # untracked code counts too
    assert code_version(repo) not in (commit, edited)
    (repo / "steps" / "new.py").unlink()
    assert code_version(repo) == edited  # same content, same version

    plain = tmp_path / "plain"
    (plain / "steps").mkdir(parents=True)
    (plain / "steps" / "train.py").write_text("x = 2\n")
    assert code_version(plain).startswith("nogit+")
