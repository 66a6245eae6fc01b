"""Caching rules of abtest/tracking/pipeline.py, on a real SQLite store with a fake launcher (no subprocesses)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from abtest.tracking.pipeline import (
    FAILED,
    PIPELINE,
    RAN,
    REUSED,
    CacheKey,
    PipelineResult,
    Step,
    StepFailedError,
    active_steps,
    code_version,
    parse_bool,
    resolve_env_manager,
    run_pipeline,
    step_parameters,
    steps_until,
    stored_value,
)

STEPS = (
    Step("prepare"),
    Step("train_a", upstream=("prepare",)),
    Step("train_b", upstream=("prepare",)),
    Step("evaluate", upstream=("prepare", "train_a", "train_b")),
    Step("register", upstream=("train_a", "train_b"), side_effects=True),
)
DEFAULTS = {
    "prepare": {"dataset": "ml-100k", "data_path": "", "seed": "42"},
    "train_a": {"prepare_run": "", "C": "1.0", "seed": "42"},
    "train_b": {"prepare_run": "", "num_leaves": "31", "seed": "42"},
    "evaluate": {"prepare_run": "", "train_a_run": "", "train_b_run": "", "cv_folds": "5"},
    "register": {"train_a_run": "", "train_b_run": "", "model_name": "movielens_ctr_ab"},
}


class FakeLauncher:
    """Creates the run `mlflow run` would create (entry point tag, params stored quoted), FINISHED or FAILED."""

    def __init__(self, experiment_id: str, failing: frozenset[str] = frozenset()) -> None:
        self.experiment_id = experiment_id
        self.failing = set(failing)
        self.launched: list[str] = []

    def __call__(self, entry_point: str, parameters: Mapping[str, str]) -> str:
        client = MlflowClient()
        run = client.create_run(self.experiment_id, tags={MLFLOW_PROJECT_ENTRY_POINT: entry_point})
        stored = {k: stored_value(v) for k, v in {**DEFAULTS[entry_point], **parameters}.items()}
        for key, value in stored.items():
            client.log_param(run.info.run_id, key, value)
        self.launched.append(entry_point)
        if entry_point in self.failing:
            client.set_terminated(run.info.run_id, "FAILED")
            raise StepFailedError(entry_point, run.info.run_id, "boom")
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


def _run(launcher: FakeLauncher, user_params: Mapping[str, str] | None = None, *, version="c1", force=False):
    return run_pipeline(
        STEPS,
        user_params=user_params or {},
        declared={name: list(params) for name, params in DEFAULTS.items()},
        defaults=DEFAULTS,
        code_version=version,
        experiment_id=launcher.experiment_id,
        launch=launcher,
        force=force,
    )


@pytest.fixture
def launcher(tmp_path: Path, request: pytest.FixtureRequest) -> FakeLauncher:
    # An experiment of its own in the session store: reuse is looked up per experiment, and a fresh SQLite
    # store per test costs seconds of migrations.
    name = f"cache-{request.node.name}-{uuid.uuid4().hex[:8]}"
    return FakeLauncher(MlflowClient().create_experiment(name, artifact_location=tmp_path.as_uri()))


def _outcomes(result: PipelineResult) -> dict[str, str]:
    return {r.entry_point: r.outcome for r in result.records}


def test_values_are_compared_as_mlflow_stores_them() -> None:
    assert stored_value("") == "''"
    assert stored_value(63) == "63"
    assert stored_value("a b") == "'a b'"
    assert stored_value("/tmp/x.zip") == "/tmp/x.zip"


def test_second_identical_run_reuses_every_step(launcher: FakeLauncher) -> None:
    first = _run(launcher, {"seed": "7"})
    assert set(_outcomes(first).values()) == {RAN}
    launcher.launched.clear()
    second = _run(launcher, {"seed": "7"})
    assert launcher.launched == []
    assert set(_outcomes(second).values()) == {REUSED}
    assert second.run_ids == first.run_ids


def test_upstream_run_ids_are_passed_as_parameters(launcher: FakeLauncher) -> None:
    result = _run(launcher)
    evaluate = MlflowClient().get_run(result.run_ids["evaluate"])
    assert evaluate.data.params["train_b_run"] == result.run_ids["train_b"]
    assert evaluate.data.params["prepare_run"] == result.run_ids["prepare"]
    assert evaluate.data.tags["abtest.code_version"] == "c1"


def test_num_leaves_reruns_train_b_and_downstream_only(launcher: FakeLauncher) -> None:
    first = _run(launcher)
    launcher.launched.clear()
    second = _run(launcher, {"num_leaves": "63"})
    assert launcher.launched == ["train_b", "evaluate", "register"]
    assert _outcomes(second) == {
        "prepare": REUSED,
        "train_a": REUSED,
        "train_b": RAN,
        "evaluate": RAN,
        "register": RAN,
    }
    assert second.run_ids["train_a"] == first.run_ids["train_a"]
    assert MlflowClient().get_run(second.run_ids["train_b"]).data.params["num_leaves"] == "63"


def test_default_value_given_explicitly_still_hits(launcher: FakeLauncher) -> None:
    _run(launcher)
    launcher.launched.clear()
    _run(launcher, {"num_leaves": "31", "data_path": ""})
    assert launcher.launched == []


def test_code_change_reruns_everything(launcher: FakeLauncher) -> None:
    _run(launcher, version="c1")
    launcher.launched.clear()
    _run(launcher, version="c2")
    assert launcher.launched == [s.entry_point for s in STEPS]


def test_force_reruns_everything(launcher: FakeLauncher) -> None:
    _run(launcher)
    launcher.launched.clear()
    _run(launcher, force=True)
    assert launcher.launched == [s.entry_point for s in STEPS]


def test_failed_step_is_rerun_and_finished_steps_reused(launcher: FakeLauncher) -> None:
    launcher.failing = {"train_b"}
    result = PipelineResult()
    with pytest.raises(StepFailedError, match="train_b"):
        run_pipeline(
            STEPS,
            user_params={},
            declared={name: list(params) for name, params in DEFAULTS.items()},
            defaults=DEFAULTS,
            code_version="c1",
            experiment_id=launcher.experiment_id,
            launch=launcher,
            result=result,
        )
    assert _outcomes(result) == {"prepare": RAN, "train_a": RAN, "train_b": FAILED}
    failed_id = result.records[-1].run_id
    assert MlflowClient().get_run(failed_id).info.status == "FAILED"

    # A main killed while train_b ran leaves a RUNNING run behind: not reusable either.
    stuck = MlflowClient().create_run(launcher.experiment_id, tags={MLFLOW_PROJECT_ENTRY_POINT: "train_b"})
    assert stuck.info.status == "RUNNING"

    launcher.failing = set()
    launcher.launched.clear()
    again = _run(launcher)
    assert launcher.launched == ["train_b", "evaluate", "register"]
    assert again.run_ids["prepare"] == result.run_ids["prepare"]
    assert again.run_ids["train_b"] not in (failed_id, stuck.info.run_id)


def test_side_effect_step_reused_only_while_latest(launcher: FakeLauncher) -> None:
    first = _run(launcher)
    _run(launcher, {"num_leaves": "63"})  # a newer register run moved the aliases
    launcher.launched.clear()
    third = _run(launcher)
    # train_b/evaluate of the first run are reusable; its register is not: its aliases were overwritten.
    assert launcher.launched == ["register"]
    assert third.run_ids["train_b"] == first.run_ids["train_b"]
    assert third.run_ids["register"] != first.run_ids["register"]


def test_cache_key_explains_a_mismatch(launcher: FakeLauncher) -> None:
    result = _run(launcher)
    run = MlflowClient().get_run(result.run_ids["train_b"])
    key = CacheKey.build(
        STEPS[2],
        defaults=DEFAULTS["train_b"],
        passed={"num_leaves": "63", "prepare_run": result.run_ids["prepare"]},
        upstream_runs=result.run_ids,
        code_version="c1",
    )
    assert key.mismatch(run) == "params (stored, wanted) {'num_leaves': ('31', '63')}"


def test_active_steps_drop_missing_entry_points() -> None:
    steps = active_steps({"prepare", "train_b", "evaluate", "main"})
    assert [s.entry_point for s in steps] == ["prepare", "train_b", "evaluate"]
    assert steps[2].upstream == ("prepare", "train_b")
    assert [s.entry_point for s in PIPELINE][:3] == ["prepare", "train_a", "train_b"]


def test_renamed_parameter_reaches_only_its_step() -> None:
    router = Step("router", renames={"router_split": "split"})
    user = {"split": "autoint", "router_split": "0.2", "seed": "7"}
    assert step_parameters(router, ["split", "salt"], user, {}) == {"split": "0.2"}
    assert step_parameters(Step("prepare"), ["split", "seed"], user, {}) == {"split": "autoint", "seed": "7"}


def test_until_cuts_the_pipeline_after_a_step() -> None:
    assert [s.entry_point for s in steps_until(STEPS, "train_a")] == ["prepare", "train_a"]
    assert steps_until(STEPS, "") == list(STEPS)
    with pytest.raises(ValueError, match="until must be one of the pipeline's steps"):
        steps_until(STEPS, "deploy")


def test_env_manager_resolution() -> None:
    assert resolve_env_manager("", None) == "local"  # `mlflow run --env-manager local` sets no tag
    assert resolve_env_manager("", "virtualenv") == "virtualenv"
    assert resolve_env_manager("local", "virtualenv") == "local"
    with pytest.raises(ValueError, match=r"env_manager must be one of .* got 'conda'"):
        resolve_env_manager("conda", None)


def test_force_parameter_is_strict() -> None:
    assert parse_bool("force", "true") is True
    assert parse_bool("force", "False") is False
    with pytest.raises(ValueError, match="force must be true or false, got 'ture'"):
        parse_bool("force", "ture")


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


def test_main_rejects_a_parameter_no_step_takes_or_of_the_wrong_type() -> None:
    from steps.cli import entry_points
    from steps.main import check_user_parameters

    pipeline = active_steps(entry_points())
    check_user_parameters({"num_leaves": "63", "split": "autoint"}, pipeline)
    with pytest.raises(
        ValueError, match=r"num_leaves must be int \(as train_b's num_leaves declares\), got 'many'"
    ):
        check_user_parameters({"num_leaves": "many"}, pipeline)
    with pytest.raises(ValueError, match="parameter num_leaves='63' is taken by no step"):
        check_user_parameters({"num_leaves": "63"}, [Step("prepare")])


def test_step_table_renders_as_markdown() -> None:
    from abtest.tracking.pipeline import StepRecord
    from abtest.tracking.pipeline_summary import markdown_table, step_table

    table = step_table(
        [StepRecord("prepare", "abc", REUSED, 0.123), StepRecord("train_b", None, FAILED, 2.0, "x|y")]
    )
    assert markdown_table(table).splitlines() == [
        "| entry_point | run_id | outcome | duration_s | reason |",
        "| --- | --- | --- | --- | --- |",
        "| prepare | abc | reused | 0.12 |  |",
        "| train_b |  | failed | 2.0 | x\\|y |",
    ]
