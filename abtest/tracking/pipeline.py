"""The pipeline as data, and the loop that runs it.

`main` runs the steps of :data:`PIPELINE`. Each :class:`Step` names the steps whose run ids it consumes; a step
whose entry point is not (yet) in MLproject is skipped, so adding a step to the pipeline is one entry here plus
its MLproject block. A step receives each upstream run id as the parameter ``<upstream>_run`` when its entry point
declares one, and nothing it does not declare.

:func:`run_pipeline` starts every step whose upstream steps are done, so steps that do not depend on each other
(train_a and train_b) run at the same time; which steps those are follows from the upstream sets, not from a list.
Whether a step runs or an earlier run is reused is decided when it becomes ready (abtest/tracking/reuse.py); how
it is started is the launcher's business (abtest/tracking/launcher.py). When a step fails, the steps running
beside it are stopped (their runs KILLED) and the error names every outcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from mlflow.tracking import MlflowClient

from ab_router.arms import EXPERIMENT_ARMS, POLICY_ARMS, policy_arm
from abtest.tracking.launcher import Launcher, StepFailedError, SubmittedStep
from abtest.tracking.lineage import run_parameter
from abtest.tracking.reuse import CacheKey, find_reusable_run

log = logging.getLogger(__name__)

ENV_MANAGERS: tuple[str, ...] = ("local", "virtualenv", "uv")
# The parameters main's run is named after (with prepare's defaults where the user set none).
RUN_NAME_PARAMS: tuple[str, ...] = ("dataset", "split")
RAN, REUSED, FAILED, KILLED = "ran", "reused", "failed", "killed"
# How often the run loop looks at the steps it started (a step takes seconds; this costs nothing measurable).
POLL_S = 0.2


@dataclass(frozen=True)
class Step:
    """One node of the DAG: an MLproject entry point and the steps whose runs it consumes."""

    entry_point: str
    upstream: tuple[str, ...] = ()
    # Registers models or moves aliases: an older run's effects may have been overwritten since.
    side_effects: bool = False
    # main's name -> this step's name, for a step parameter whose name means something else in main
    # (router's `split` is the share of users sent to B; main's `split` is prepare's split mode).
    renames: Mapping[str, str] = field(default_factory=dict)

    def main_name(self, step_name: str) -> str | None:
        """The main parameter feeding ``step_name`` (None: main's same-named parameter means something else)."""
        for main_param, target in self.renames.items():
            if target == step_name:
                return main_param
        return None if step_name in self.renames else step_name


# One training step per row of the arm table; evaluate compares the experiment's pair, register takes them all.
_TRAINING_STEPS = tuple(arm.train_entry_point for arm in POLICY_ARMS)
_COMPARED_STEPS = tuple(policy_arm(arm).train_entry_point for arm in EXPERIMENT_ARMS)
PIPELINE: tuple[Step, ...] = (
    Step("prepare"),
    *(Step(entry_point, upstream=("prepare",)) for entry_point in _TRAINING_STEPS),
    Step("evaluate", upstream=("prepare", *_COMPARED_STEPS)),
    Step("register", upstream=(*_TRAINING_STEPS, "evaluate"), side_effects=True),
    Step("router", upstream=("prepare", "register"), side_effects=True, renames={"router_split": "split"}),
    Step("simulate", upstream=("prepare", "router")),
    Step("analyze", upstream=("prepare", "router", "simulate")),
)


def active_steps(available: Collection[str], pipeline: Sequence[Step] = PIPELINE) -> list[Step]:
    """The pipeline's steps whose entry points exist, with upstream references to missing steps dropped."""
    present = [step for step in pipeline if step.entry_point in available]
    names = {step.entry_point for step in present}
    return [replace(step, upstream=tuple(u for u in step.upstream if u in names)) for step in present]


def steps_until(steps: Sequence[Step], until: str) -> list[Step]:
    """The steps up to and including ``until`` ("" = all of them)."""
    names = [step.entry_point for step in steps]
    if not until:
        return list(steps)
    if until not in names:
        raise ValueError(f"until must be one of the pipeline's steps {names} (or empty: all), got {until!r}")
    return list(steps[: names.index(until) + 1])


def step_parameters(
    step: Step,
    declared: Collection[str],
    user_params: Mapping[str, str],
    upstream_runs: Mapping[str, str],
) -> dict[str, str]:
    """What main passes to a step: the user-set parameters it declares, plus its upstream run ids."""
    passed = {}
    for name in declared:
        main_name = step.main_name(name)
        if main_name is not None and main_name in user_params:
            passed[name] = user_params[main_name]
    for upstream in step.upstream:
        name = run_parameter(upstream)
        if name in declared:
            passed[name] = upstream_runs[upstream]
    return passed


def step_run_name(step: Step, passed: Mapping[str, str]) -> str:
    """A child run's name: its entry point and the parameters the user set for it (``train_b num_leaves=63``).

    Upstream run ids are left out (the tree shows them); a path is shown by its last part.
    """
    upstream = {run_parameter(name) for name in step.upstream}
    shown = [f"{name}={_short(value)}" for name, value in passed.items() if name not in upstream]
    return " ".join([step.entry_point, *shown])


def pipeline_run_name(
    user_params: Mapping[str, str], defaults: Mapping[str, str], *, until: str, force: bool
) -> str:
    """main's run name: the data it runs on (``main ml-100k temporal``), ``until=<step>`` and ``force`` if set.

    ``defaults``: the owning step's (prepare's) defaults of :data:`RUN_NAME_PARAMS`, where the user set none.
    """
    shown = [user_params.get(name) or defaults.get(name, "") for name in RUN_NAME_PARAMS]
    shown += [f"until={until}"] * bool(until) + ["force"] * force
    return " ".join(["main", *(_short(value) for value in shown if value)])


def is_generated_run_name(name: str) -> bool:
    """True for a name MLflow made up (``receptive-rook-141``), false for one a user gave (``--run-name``).

    ``mlflow run --run-name`` renames main's run only after its process started, so main tells the two apart by
    the name's form: MLflow's own word lists where this MLflow has them, else "<word>-<word>-<number>".
    """
    parts = name.split("-")
    if len(parts) != 3 or not parts[2].isdigit():
        return False
    try:
        from mlflow.utils.name_utils import _GENERATOR_NOUNS, _GENERATOR_PREDICATES
    except ImportError:
        return parts[0].isalpha() and parts[1].isalpha()
    return parts[0] in _GENERATOR_PREDICATES and parts[1] in _GENERATOR_NOUNS


def _short(value: str) -> str:
    return os.path.basename(value.rstrip("/")) if os.sep in value else value


@dataclass(frozen=True)
class StepRecord:
    """One row of main's step table."""

    entry_point: str
    run_id: str | None
    outcome: str  # ran | reused | failed | killed
    duration_s: float
    reason: str = ""


@dataclass
class PipelineResult:
    """The step table so far (in pipeline order) and the run id of every finished step."""

    records: list[StepRecord] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Launch:
    step: Step
    passed: Mapping[str, str]
    key: CacheKey
    started: float


@dataclass
class _Started:
    step: Step
    submitted: SubmittedStep
    started: float


def run_pipeline(
    steps: Sequence[Step],
    *,
    user_params: Mapping[str, str],
    declared: Mapping[str, Collection[str]],
    defaults: Mapping[str, Mapping[str, str]],
    code_version: str,
    experiment_id: str,
    launch: Launcher,
    force: bool = False,
    on_record: Callable[[StepRecord], None] | None = None,
    result: PipelineResult | None = None,
    notes: Mapping[str, str] | None = None,
) -> PipelineResult:
    """Run ``steps``, each as soon as its upstream steps are done, reusing earlier runs where reuse.py allows.

    ``declared``/``defaults`` map each entry point to its MLproject parameter names and stored defaults.
    ``notes`` (entry point -> text) go into the reason column of that step's row (main: stale runs it replaces).
    ``result`` (filled in place) keeps the table of the steps done so far when a step fails with
    :class:`StepFailedError`, which is raised after the steps running beside it were stopped, naming them.
    """
    loop = _RunLoop(
        steps=steps,
        user_params=user_params,
        declared=declared,
        defaults=defaults,
        code_version=code_version,
        experiment_id=experiment_id,
        launch=launch,
        force=force,
        on_record=on_record,
        result=result if result is not None else PipelineResult(),
        notes=notes or {},
    )
    loop.run()
    return loop.result


@dataclass
class _RunLoop:
    """One :func:`run_pipeline` call: what it was given, and the steps started and not yet recorded."""

    steps: Sequence[Step]
    user_params: Mapping[str, str]
    declared: Mapping[str, Collection[str]]
    defaults: Mapping[str, Mapping[str, str]]
    code_version: str
    experiment_id: str
    launch: Launcher
    force: bool
    on_record: Callable[[StepRecord], None] | None
    result: PipelineResult
    notes: Mapping[str, str]
    running: dict[str, _Started] = field(default_factory=dict)
    client: MlflowClient = field(default_factory=MlflowClient)

    def run(self) -> None:
        """Start what is ready, record what ended, until every step is recorded or one failed."""
        pending = list(self.steps)
        try:
            while pending or self.running:
                # A reused step is done at once, so what follows it may be ready in the same pass.
                to_run: list[_Launch] = []
                while ready := [s for s in pending if all(u in self.result.run_ids for u in s.upstream)]:
                    for step in ready:
                        pending.remove(step)
                        if (launch := self._reuse_or_plan(step)) is not None:
                            to_run.append(launch)
                # One step and nothing beside it: nothing else can become ready until it ends, so it runs to its
                # end in main's process group, sparing the extra `mlflow run` process of an asynchronous one.
                wait = len(to_run) == 1 and not self.running
                for launch in to_run:
                    self._submit(launch, wait=wait)
                if not self.running:
                    if pending:
                        raise RuntimeError(
                            f"steps {[s.entry_point for s in pending]} wait for upstream steps that are not in "
                            f"this pipeline ({[s.entry_point for s in self.steps]})"
                        )
                    break
                failures = self._record_ended()
                if failures:
                    raise self._stop_running(failures)
                time.sleep(POLL_S)
        finally:
            # An error of main itself (or Ctrl-C) must not leave steps running without a parent.
            for entry_point, started in list(self.running.items()):
                del self.running[entry_point]
                started.submitted.cancel(f"stopped: main stopped while {entry_point} ran")

    def _append(self, record: StepRecord) -> None:
        order = [step.entry_point for step in self.steps]
        self.result.records.append(record)
        self.result.records.sort(key=lambda r: order.index(r.entry_point))
        if record.run_id is not None and record.outcome in (RAN, REUSED):
            self.result.run_ids[record.entry_point] = record.run_id
        if self.on_record is not None:
            self.on_record(record)

    def _reuse_or_plan(self, step: Step) -> _Launch | None:
        """Reuse ``step``'s earlier run (recorded at once; returns None), or say how to launch it."""
        passed = step_parameters(step, self.declared[step.entry_point], self.user_params, self.result.run_ids)
        key = CacheKey.build(
            step,
            defaults=self.defaults[step.entry_point],
            passed=passed,
            upstream_runs=self.result.run_ids,
            code_version=self.code_version,
        )
        started = time.monotonic()
        if not self.force:
            reusable = find_reusable_run(
                key, experiment_id=self.experiment_id, side_effects=step.side_effects, client=self.client
            )
            if reusable is not None:
                log.info("reusing %s run %s", step.entry_point, reusable.info.run_id)
                self._append(
                    StepRecord(step.entry_point, reusable.info.run_id, REUSED, time.monotonic() - started)
                )
                return None
        return _Launch(step, passed, key, started)

    def _submit(self, launch: _Launch, *, wait: bool) -> None:
        """Start a step (recorded when it ends; a failure to start stops the others and raises)."""
        entry_point = launch.step.entry_point
        name = step_run_name(launch.step, launch.passed)
        log.info("running %s (run name %r) with %s", entry_point, name, launch.passed)
        try:
            submitted = self.launch(entry_point, launch.passed, run_name=name, wait=wait)
        except StepFailedError as failure:
            if failure.run_id:
                _set_tags(self.client, failure.run_id, launch.key.tags())
            duration = time.monotonic() - launch.started
            self._append(StepRecord(entry_point, failure.run_id, FAILED, duration, str(failure)))
            stopped = self._stop_running([failure])
            if stopped is failure:
                raise
            raise stopped from failure
        # Tagged at once, not when it ends: the run of a killed main still shows what it was launched with.
        _set_tags(self.client, submitted.run_id, launch.key.tags())
        self.running[entry_point] = _Started(launch.step, submitted, launch.started)

    def _record_ended(self) -> list[StepFailedError]:
        """Record every started step that has ended; returns the failures among them."""
        failures = []
        for entry_point, started in list(self.running.items()):
            if not started.submitted.done():
                continue
            del self.running[entry_point]
            duration = time.monotonic() - started.started
            try:
                run_id = started.submitted.result()
            except StepFailedError as failure:
                failures.append(failure)
                self._append(StepRecord(entry_point, failure.run_id, FAILED, duration, str(failure)))
                continue
            self._append(StepRecord(entry_point, run_id, RAN, duration, self.notes.get(entry_point, "")))
        return failures

    def _stop_running(self, failures: Sequence[StepFailedError]) -> StepFailedError:
        """Stop the steps still running beside ``failures``; returns the error to raise, naming every outcome."""
        first, *others = failures
        alongside = [f"step {f.entry_point} failed too (run {f.run_id}): {f.cause}" for f in others]
        for entry_point, started in list(self.running.items()):
            del self.running[entry_point]
            status = started.submitted.cancel(f"stopped because step {first.entry_point} failed: {first.cause}")
            duration, run_id = time.monotonic() - started.started, started.submitted.run_id
            if status == "FINISHED":
                alongside.append(f"step {entry_point} finished before it could be stopped (run {run_id})")
                self._append(StepRecord(entry_point, run_id, RAN, duration, self.notes.get(entry_point, "")))
            else:
                alongside.append(f"step {entry_point} was stopped (run {run_id} {status})")
                reason = f"stopped: step {first.entry_point} failed"
                self._append(StepRecord(entry_point, run_id, KILLED, duration, reason))
        if not alongside:
            return first
        return StepFailedError(first.entry_point, first.run_id, first.cause, alongside=alongside)


def _set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    for name, value in tags.items():
        client.set_tag(run_id, name, value)


def resolve_env_manager(requested: str, main_run_env_tag: str | None) -> str:
    """The env manager for the steps: the one asked for, else the one main itself runs in.

    ``mlflow run`` tags a run it set up an environment for with ``mlflow.project.env``; the tag is absent when
    it ran with ``--env-manager local``.
    """
    chosen = requested or main_run_env_tag or "local"
    if chosen not in ENV_MANAGERS:
        raise ValueError(
            f"env_manager must be one of {list(ENV_MANAGERS)} (or empty: as main runs), got {chosen!r}"
        )
    return chosen


def parse_bool(name: str, text: str) -> bool:
    """A true/false parameter, strictly (a typo must not silently mean false)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ValueError(f"parameter {name} must be true or false, got {text!r}")
