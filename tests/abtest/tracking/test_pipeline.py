"""The run loop of abtest/tracking/pipeline.py: order, concurrency, reuse and failures, on a real SQLite store
with a fake launcher (no subprocesses; the real launcher is tested in test_launcher.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from abtest.tracking.launcher import StepFailedError
from abtest.tracking.pipeline import (
    FAILED,
    KILLED,
    PIPELINE,
    RAN,
    REUSED,
    PipelineResult,
    Step,
    active_steps,
    is_generated_run_name,
    parse_bool,
    pipeline_run_name,
    resolve_env_manager,
    run_pipeline,
    step_parameters,
    step_run_name,
    steps_until,
)
from abtest.tracking.reuse import stored_value

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


class FakeSubmitted:
    """A submitted step whose run exists at once; it ends when polled, unless its entry point is held."""

    def __init__(self, launcher: FakeLauncher, entry_point: str, run_id: str) -> None:
        self.launcher, self.entry_point, self.run_id = launcher, entry_point, run_id

    def done(self) -> bool:
        return self.entry_point not in self.launcher.held

    def result(self) -> str:
        self.launcher.running.discard(self.entry_point)
        if self.entry_point in self.launcher.failing:
            MlflowClient().set_terminated(self.run_id, "FAILED")
            raise StepFailedError(self.entry_point, self.run_id, "boom")
        MlflowClient().set_terminated(self.run_id, "FINISHED")
        return self.run_id

    def cancel(self, reason: str) -> str:
        self.launcher.running.discard(self.entry_point)
        self.launcher.cancelled[self.entry_point] = reason
        MlflowClient().set_terminated(self.run_id, "KILLED")
        return "KILLED"


class FakeLauncher:
    """Creates the run `mlflow run` would create (entry point tag, run name, params stored quoted).

    ``running_beside`` records, for each launch, the steps already running when it was submitted.
    """

    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.failing: set[str] = set()
        self.held: set[str] = set()  # steps that do not end by themselves (cancelled or held forever)
        self.launched: list[str] = []
        self.running: set[str] = set()
        self.running_beside: dict[str, set[str]] = {}
        self.cancelled: dict[str, str] = {}
        self.waited: dict[str, bool] = {}

    def __call__(
        self, entry_point: str, parameters: Mapping[str, str], *, run_name: str | None = None, wait: bool = False
    ):
        client = MlflowClient()
        run = client.create_run(
            self.experiment_id, tags={MLFLOW_PROJECT_ENTRY_POINT: entry_point}, run_name=run_name
        )
        stored = {k: stored_value(v) for k, v in {**DEFAULTS[entry_point], **parameters}.items()}
        for key, value in stored.items():
            client.log_param(run.info.run_id, key, value)
        self.launched.append(entry_point)
        self.waited[entry_point] = wait
        self.running_beside[entry_point] = set(self.running)
        self.running.add(entry_point)
        return FakeSubmitted(self, entry_point, run.info.run_id)


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


def test_independent_steps_run_together_and_the_table_keeps_pipeline_order(launcher: FakeLauncher) -> None:
    result = _run(launcher)
    # Which steps run together follows from the upstream sets, nothing lists pairs: train_b was submitted while
    # train_a ran, and this DAG's register (upstream train_a, train_b) beside evaluate.
    assert launcher.running_beside == {
        "prepare": set(),
        "train_a": set(),
        "train_b": {"train_a"},
        "evaluate": set(),
        "register": {"evaluate"},
    }
    # A step with nothing beside it is run to its end; the others are submitted without waiting.
    assert launcher.waited == {
        "prepare": True,
        "train_a": False,
        "train_b": False,
        "evaluate": False,
        "register": False,
    }
    assert [r.entry_point for r in result.records] == [s.entry_point for s in STEPS]


def test_a_failure_stops_the_step_beside_it_and_names_both(launcher: FakeLauncher) -> None:
    launcher.failing, launcher.held = {"train_b"}, {"train_a"}
    result = PipelineResult()
    with pytest.raises(StepFailedError) as raised:
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
    records = {r.entry_point: r for r in result.records}
    train_a, train_b = records["train_a"].run_id, records["train_b"].run_id
    assert str(raised.value) == (
        f"step train_b failed (run {train_b}): boom; step train_a was stopped (run {train_a} KILLED)"
    )
    assert _outcomes(result) == {"prepare": RAN, "train_a": KILLED, "train_b": FAILED}
    assert records["train_a"].reason == "stopped: step train_b failed"
    assert launcher.cancelled == {"train_a": "stopped because step train_b failed: boom"}
    assert MlflowClient().get_run(train_a).info.status == "KILLED"
    assert launcher.launched == ["prepare", "train_a", "train_b"]  # nothing after them started
    assert "train_a" not in result.run_ids


def test_notes_reach_the_reason_column_of_the_step_that_ran(launcher: FakeLauncher) -> None:
    result = run_pipeline(
        STEPS[:2],
        user_params={},
        declared={name: list(params) for name, params in DEFAULTS.items()},
        defaults=DEFAULTS,
        code_version="c1",
        experiment_id=launcher.experiment_id,
        launch=launcher,
        notes={"train_a": "stale run abc marked KILLED"},
    )
    assert [(r.entry_point, r.reason) for r in result.records] == [
        ("prepare", ""),
        ("train_a", "stale run abc marked KILLED"),
    ]


def test_child_runs_are_named_after_the_step_and_the_parameters_the_user_set(launcher: FakeLauncher) -> None:
    result = _run(launcher, {"num_leaves": "63", "data_path": "/data/ml-100k.zip"})
    names = {entry: MlflowClient().get_run(run_id).info.run_name for entry, run_id in result.run_ids.items()}
    assert names == {
        "prepare": "prepare data_path=ml-100k.zip",
        "train_a": "train_a",
        "train_b": "train_b num_leaves=63",
        "evaluate": "evaluate",
        "register": "register",
    }
    assert step_run_name(Step("router", renames={"router_split": "split"}), {"split": "0.2"}) == "router split=0.2"


def test_main_is_named_after_the_pipeline_and_keeps_a_name_the_user_gave() -> None:
    defaults = {"dataset": "ml-100k", "split": "temporal"}
    assert pipeline_run_name({}, defaults, until="", force=False) == "main ml-100k temporal"
    assert (
        pipeline_run_name({"split": "autoint"}, defaults, until="evaluate", force=True)
        == "main ml-100k autoint until=evaluate force"
    )
    assert is_generated_run_name("receptive-rook-141")
    assert not is_generated_run_name("my-run-1")
    assert not is_generated_run_name("nightly ml-1m")


def test_analyze_follows_simulate_and_is_skipped_until_mlproject_has_it() -> None:
    names = [s.entry_point for s in PIPELINE]
    assert names[names.index("simulate") + 1] == "analyze"
    assert PIPELINE[names.index("analyze")].upstream == ("prepare", "router", "simulate")
    without = active_steps(set(names) - {"analyze"})
    assert [s.entry_point for s in without] == names[:-1]
    analyze = active_steps(set(names))[-1]
    declared = ["prepare_run", "router_run", "simulate_run"]
    runs = {"prepare": "p", "router": "r", "simulate": "s"}
    # main passes analyze its upstream run ids and nothing it does not declare (alpha, seed, days...).
    assert step_parameters(analyze, declared, {"alpha": "0.1", "days": "3"}, runs) == {
        "prepare_run": "p",
        "router_run": "r",
        "simulate_run": "s",
    }
