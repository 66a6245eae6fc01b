"""The rule for reusing a step's earlier run instead of running it again.

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
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from abtest.tracking import tags

if TYPE_CHECKING:
    from abtest.tracking.pipeline import Step

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


def stored_value(value: object) -> str:
    """A parameter value as `mlflow run` logs it: ``str`` then shell-quoted (``""`` becomes ``''``)."""
    return shlex.quote(str(value))


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
