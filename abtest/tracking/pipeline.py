"""The pipeline as data, and the rule for reusing a step's earlier run.

`main` walks :data:`PIPELINE` in order. Each :class:`Step` names the steps whose run ids it consumes; a step whose
entry point is not (yet) in MLproject is skipped, so adding a step to the pipeline is one entry here plus its
MLproject block. A step receives each upstream run id as the parameter ``<upstream>_run`` when its entry point
declares one.

A step's earlier run is reused only when all of these hold (see :class:`CacheKey`):

- it is FINISHED (a FAILED, KILLED or still RUNNING run is never reused) and ran the same entry point;
- its parameters equal the ones this launch would log, compared as MLflow stores them: strings, shell-quoted the
  way ``mlflow run`` quotes them (``""`` is stored as ``''``), with MLproject defaults filled in;
- it consumed the same upstream run ids (recorded in the ``abtest.upstream`` tag, whether or not the step takes
  them as parameters);
- it ran the same code: the ``abtest.code_version`` tag holds the git commit, plus a hash of the relevant files
  when the working tree differs from that commit;
- for a step with side effects outside its run (the registry's aliases), it is also the latest FINISHED run of its
  entry point, so nothing has moved those aliases since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from ab_router.arms import EXPERIMENT_ARMS, POLICY_ARMS, policy_arm
from abtest.tracking import tags
from abtest.tracking.lineage import run_parameter

log = logging.getLogger(__name__)

# Files whose change changes what a step computes; docs, tests and benchmarks do not.
CODE_PATHS: tuple[str, ...] = (
    "steps",
    "abtest",
    "ab_router",
    "MLproject",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-test.txt",
    "python_env.yaml",
)
ENV_MANAGERS: tuple[str, ...] = ("local", "virtualenv", "uv")
RAN, REUSED, FAILED = "ran", "reused", "failed"


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


def stored_value(value: object) -> str:
    """A parameter value as `mlflow run` logs it: ``str`` then shell-quoted (``""`` becomes ``''``)."""
    return shlex.quote(str(value))


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


@dataclass(frozen=True)
class CacheKey:
    """Everything that decides whether an earlier run of a step can stand in for running it now."""

    entry_point: str
    params: Mapping[str, str]  # as MLflow stores them (see stored_value), defaults filled in
    upstream: Mapping[str, str]  # upstream entry point -> run id
    code_version: str

    @classmethod
    def build(
        cls,
        step: Step,
        *,
        defaults: Mapping[str, str],
        passed: Mapping[str, str],
        upstream_runs: Mapping[str, str],
        code_version: str,
    ) -> CacheKey:
        """The key of launching ``step`` with ``passed`` parameters over its entry point's ``defaults``."""
        params = {name: stored_value(value) for name, value in {**defaults, **passed}.items()}
        upstream = {name: upstream_runs[name] for name in step.upstream}
        return cls(step.entry_point, params, upstream, code_version)

    @property
    def upstream_text(self) -> str:
        """The upstream run ids as one canonical string (a tag value)."""
        return json.dumps(dict(sorted(self.upstream.items())), separators=(",", ":"))

    def tags(self) -> dict[str, str]:
        """Tags to set on a run launched with this key, so a later main can match it."""
        return {tags.CODE_VERSION: self.code_version, tags.UPSTREAM: self.upstream_text}

    def mismatch(self, run: Run) -> str | None:
        """Why ``run`` cannot be reused for this key (None when it can)."""
        run_tags, params = run.data.tags, run.data.params
        if run.info.status != "FINISHED":
            return f"status {run.info.status}"
        if run_tags.get(MLFLOW_PROJECT_ENTRY_POINT) != self.entry_point:
            return f"entry point {run_tags.get(MLFLOW_PROJECT_ENTRY_POINT)!r}"
        if run_tags.get(tags.CODE_VERSION) != self.code_version:
            return f"code version {run_tags.get(tags.CODE_VERSION)!r} != {self.code_version!r}"
        if run_tags.get(tags.UPSTREAM) != self.upstream_text:
            return f"upstream {run_tags.get(tags.UPSTREAM)!r} != {self.upstream_text!r}"
        differing = {k: (params.get(k), v) for k, v in self.params.items() if params.get(k) != v}
        if differing:
            return f"params (stored, wanted) {differing}"
        return None


def find_reusable_run(
    key: CacheKey, *, experiment_id: str, side_effects: bool = False, client: MlflowClient | None = None
) -> Run | None:
    """The newest run that :meth:`CacheKey.mismatch` accepts, or None."""
    client = client or MlflowClient()
    filter_string = (
        f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{key.entry_point}' and attributes.status = 'FINISHED'"
        f" and tags.`{tags.CODE_VERSION}` = '{key.code_version}'"
    )
    candidates = client.search_runs([experiment_id], filter_string, order_by=["attributes.start_time DESC"])
    if side_effects:
        latest = _latest_finished(key.entry_point, experiment_id=experiment_id, client=client)
        candidates = [run for run in candidates if latest is not None and run.info.run_id == latest]
    for run in candidates:
        reason = key.mismatch(run)
        if reason is None:
            return run
        log.debug("not reusing %s run %s: %s", key.entry_point, run.info.run_id, reason)
    return None


def _latest_finished(entry_point: str, *, experiment_id: str, client: MlflowClient) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def code_version(project_dir: Path) -> str:
    """The git commit of ``project_dir``, plus ``+<hash>`` of the relevant files when they differ from it.

    Outside a git checkout (an unpacked zip) the version is ``nogit+<hash>``: still exact, never shared by
    different code.
    """
    commit = _git(project_dir, "rev-parse", "HEAD")
    if commit is None:
        return f"nogit+{_tree_hash(project_dir, _walk_files(project_dir))}"
    dirty = _git(project_dir, "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if not dirty:
        return commit
    listed = _git(project_dir, "ls-files", "--cached", "--others", "--exclude-standard", "--", *CODE_PATHS) or ""
    return f"{commit}+{_tree_hash(project_dir, sorted(set(listed.splitlines())))}"


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _walk_files(project_dir: Path) -> list[str]:
    found = []
    for name in CODE_PATHS:
        path = project_dir / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found += [str(p.relative_to(project_dir)) for p in files if "__pycache__" not in p.parts]
    return found


def _tree_hash(project_dir: Path, relative_paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for relative in relative_paths:
        path = project_dir / relative
        digest.update(relative.encode() + b"\0")
        # A deleted tracked file is listed by `git ls-files` but gone: its absence is part of the version.
        digest.update(path.read_bytes() if path.is_file() else b"<deleted>")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class StepFailedError(RuntimeError):
    """A step's run did not finish; ``run_id`` is its (FAILED) run when MLflow got as far as creating one."""

    def __init__(self, entry_point: str, run_id: str | None, cause: str) -> None:
        super().__init__(f"step {entry_point} failed (run {run_id}): {cause}")
        self.entry_point = entry_point
        self.run_id = run_id


# Launches one entry point with the given parameters and returns its run id; raises StepFailedError.
Launcher = Callable[[str, Mapping[str, str]], str]


def mlflow_launcher(*, project_uri: str, env_manager: str, experiment_id: str) -> Launcher:
    """A launcher that runs an entry point with ``mlflow.projects.run`` as a child of the active run.

    MLflow does not hand the caller's ``--env-manager`` down to nested runs, so it is passed explicitly.
    """

    def launch(entry_point: str, parameters: Mapping[str, str]) -> str:
        try:
            submitted = mlflow.projects.run(
                project_uri,
                entry_point=entry_point,
                parameters=dict(parameters),
                env_manager=env_manager,
                experiment_id=experiment_id,
                synchronous=True,
            )
        except ExecutionException as exc:
            found = re.search(r"Run \(ID '([0-9a-f]+)'\) failed", str(exc))
            run_id = found.group(1) if found else None
            raise StepFailedError(entry_point, run_id, failure_reason(run_id, str(exc))) from exc
        return submitted.run_id

    return launch


def failure_reason(run_id: str | None, fallback: str, *, client: MlflowClient | None = None) -> str:
    """Why a step's run failed: its :data:`abtest.tracking.tags.ERROR` ("<Type>: <message>"), else ``fallback``.

    A step whose ``main`` is not decorated with :func:`~abtest.tracking.lineage.records_failure` and that failed
    before opening its run (a parameter check) has no such tag; the reason is then only in its console output, and
    the fallback says so.
    """
    if run_id:
        try:
            reason = (client or MlflowClient()).get_run(run_id).data.tags.get(tags.ERROR)
        except MlflowException:
            reason = None
        if reason:
            return reason
    return f"{fallback} (the step recorded no {tags.ERROR} tag: the cause is in its output above)"


@dataclass(frozen=True)
class StepRecord:
    """One row of main's step table."""

    entry_point: str
    run_id: str | None
    outcome: str  # ran | reused | failed
    duration_s: float
    reason: str = ""


@dataclass
class PipelineResult:
    """The step table so far and the run id of every finished step."""

    records: list[StepRecord] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)


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
) -> PipelineResult:
    """Run ``steps`` in order, reusing earlier runs where :class:`CacheKey` allows.

    ``declared``/``defaults`` map each entry point to its MLproject parameter names and stored defaults.
    ``result`` (filled in place) keeps the table of the steps done so far when a step fails with
    :class:`StepFailedError`, which is re-raised.
    """
    result = result if result is not None else PipelineResult()
    client = MlflowClient()
    for step in steps:
        passed = step_parameters(step, declared[step.entry_point], user_params, result.run_ids)
        key = CacheKey.build(
            step,
            defaults=defaults[step.entry_point],
            passed=passed,
            upstream_runs=result.run_ids,
            code_version=code_version,
        )
        started = time.monotonic()
        reusable = None
        if not force:
            reusable = find_reusable_run(
                key, experiment_id=experiment_id, side_effects=step.side_effects, client=client
            )
        if reusable is not None:
            record = StepRecord(step.entry_point, reusable.info.run_id, REUSED, time.monotonic() - started)
            log.info("reusing %s run %s", step.entry_point, reusable.info.run_id)
        else:
            log.info("running %s with %s", step.entry_point, passed)
            try:
                run_id = launch(step.entry_point, passed)
            except StepFailedError as failure:
                if failure.run_id:
                    _set_tags(client, failure.run_id, key.tags())
                record = StepRecord(
                    step.entry_point, failure.run_id, FAILED, time.monotonic() - started, str(failure)
                )
                _append(result, record, on_record)
                raise
            _set_tags(client, run_id, key.tags())
            record = StepRecord(step.entry_point, run_id, RAN, time.monotonic() - started)
        result.run_ids[step.entry_point] = record.run_id
        _append(result, record, on_record)
    return result


def _set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    for name, value in tags.items():
        client.set_tag(run_id, name, value)


def _append(result: PipelineResult, record: StepRecord, on_record: Callable[[StepRecord], None] | None) -> None:
    result.records.append(record)
    if on_record is not None:
        on_record(record)


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
