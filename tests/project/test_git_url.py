"""`mlflow run <git URL> -e main --version <ref>`: served by `git daemon` on 127.0.0.1, run from MLflow's clone.

The nested steps must run from the same clone as main (not from the caller's directory), so every run records the
served commit; a second run of the same commit at another ref form reuses the first run's steps.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.pipeline_runs import (
    SNAPSHOT_BRANCH,
    SNAPSHOT_TAG,
    Snapshot,
    Store,
    latest_main,
    make_store,
    outcomes,
    run_main,
)

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def git_url(project_snapshot: Snapshot) -> Iterator[str]:
    """A git:// URL of the snapshot repo, served until the module ends."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    port = _free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            f"--base-path={project_snapshot.path.parent}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(project_snapshot.path.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"git://127.0.0.1:{port}/{project_snapshot.path.name}"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["git", "ls-remote", url], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"git daemon did not serve {url}: {daemon.stderr.read().decode() if daemon.stderr else ''}"
                )
            time.sleep(0.2)
        yield url
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.fixture(scope="module")
def git_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_store(tmp_path_factory.mktemp("git-store"), experiment="abtest-git")


def test_main_runs_from_a_git_url_at_a_tag(
    git_url: str, git_store: Store, project_snapshot: Snapshot, synthetic_ml100k_zip: Path
) -> None:
    params = {"source": "local", "data_path": str(synthetic_ml100k_zip), "until": "prepare"}
    # cwd is a directory without the project: the steps can only come from MLflow's clone.
    run_main(git_url, git_store, params, version=SNAPSHOT_TAG)
    main_run = latest_main(git_store)
    assert main_run.info.status == "FINISHED"
    assert outcomes(main_run) == {"prepare": "ran"}
    prepare = git_store.client.get_run(main_run.data.tags["abtest.steps.prepare.run_id"])
    assert prepare.info.status == "FINISHED"
    assert prepare.data.tags["mlflow.parentRunId"] == main_run.info.run_id
    for run in (main_run, prepare):
        assert run.data.tags["mlflow.source.git.commit"] == project_snapshot.commit
        assert run.data.tags["mlflow.source.git.repoURL"] == git_url
    assert prepare.data.tags["abtest.code_version"] == project_snapshot.commit  # a clean clone: the commit alone


@pytest.mark.parametrize("ref", ["full_sha", SNAPSHOT_BRANCH])
def test_same_commit_at_another_ref_reuses_the_steps(
    ref: str, git_url: str, git_store: Store, project_snapshot: Snapshot, synthetic_ml100k_zip: Path
) -> None:
    first_prepare = git_store.runs("tags.`mlflow.project.entryPoint` = 'prepare'")
    assert len(first_prepare) == 1, "needs test_main_runs_from_a_git_url_at_a_tag first"
    version = project_snapshot.commit if ref == "full_sha" else ref
    params = {"source": "local", "data_path": str(synthetic_ml100k_zip), "until": "prepare"}
    run_main(git_url, git_store, params, version=version)
    main_run = latest_main(git_store)
    assert main_run.data.tags["mlflow.source.git.commit"] == project_snapshot.commit
    assert outcomes(main_run) == {"prepare": "reused"}
    assert main_run.data.tags["abtest.steps.prepare.run_id"] == first_prepare[0].info.run_id
