"""How steps hand each other their inputs: by run id, never by loose file path.

A step that consumes another step's output takes that run's id as a parameter. Run on its own without one, it
looks for the latest FINISHED run of the producing step with the same identifying parameters, compared as MLflow
stores them (strings), whatever its other parameters (the log line lists them), and otherwise says which command
would make one.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.environment_variables import MLFLOW_RUN_ID
from mlflow.tracking import MlflowClient

from abtest.config import (
    FEATURE_DEFAULTS_FILE,
    FEATURE_TABLES_DIR,
    ITEM_FEATURES_FILE,
    ITEMS_FILE,
    PROCESSED_DIR,
    SPLITS,
    USER_FEATURES_FILE,
    USERS_FILE,
)
from abtest.tracking import tags
from abtest.tracking.stale import ProcessIdentity
from abtest.tracking.store import ensure_store_ready, retry_when_locked

log = logging.getLogger(__name__)


_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


class LineageError(RuntimeError):
    """An upstream run that a step needs does not exist or is not usable."""


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def find_latest_finished_run(
    step: str, params: Mapping[str, Any], *, experiment_ids: list[str] | None = None
) -> Run | None:
    """Latest FINISHED run of ``step`` whose params equal ``params``, compared as strings as MLflow stores them."""
    if experiment_ids is None:
        experiment_ids = [current_experiment_id()]
    clauses = [f"tags.{tags.STEP} = {_quote(step)}", "attributes.status = 'FINISHED'"]
    clauses += [f"params.{key} = {_quote(str(value))}" for key, value in params.items()]
    runs = MlflowClient().search_runs(
        experiment_ids,
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def current_experiment_id() -> str:
    """The active run's experiment, else the one MLflow would start a run in (MLFLOW_EXPERIMENT_ID/NAME)."""
    active = mlflow.active_run()
    if active is not None:
        return active.info.experiment_id
    return mlflow.tracking.fluent._get_experiment_id()


def resolve_upstream_run(step: str, run_id: str, params: Mapping[str, Any], *, how_to_make: str) -> str:
    """Return ``run_id`` after checking it, or find the latest matching FINISHED run of ``step``."""
    client = MlflowClient()
    if run_id:
        try:
            run = client.get_run(run_id)
        except mlflow.exceptions.MlflowException as exc:
            raise LineageError(f"{step} run {run_id!r} does not exist in this tracking store") from exc
        if run.info.status != "FINISHED":
            raise LineageError(f"{step} run {run_id} is {run.info.status}, not FINISHED")
        if run.data.tags.get(tags.STEP) != step:
            raise LineageError(
                f"run {run_id} is a {run.data.tags.get(tags.STEP, 'non-pipeline')!r} run, not a {step!r} run"
            )
        return run_id
    run = find_latest_finished_run(step, params)
    if run is None:
        shown = " ".join(f"-P {k}={v}" for k, v in params.items())
        raise LineageError(
            f"no FINISHED {step} run with {dict(params)} in this experiment; make one with: {how_to_make} {shown}"
        )
    log.info("using %s", describe_chosen_run(step, run, params))
    return run.info.run_id


def run_parameter(entry_point: str) -> str:
    """The parameter through which a step receives ``entry_point``'s run id (``prepare_run``, ``train_a_run``)."""
    return f"{entry_point}_run"


def prepare_run_of(training_run: Run) -> str:
    """The prepare run a training run read: its lineage tag (the param may hold `mlflow run`'s "" default).

    Runs of older training steps have only the param; a run with neither is refused, naming the fix.
    """
    prepare_run = training_run.data.tags.get(tags.PREPARE_RUN) or training_run.data.params.get("prepare_run", "")
    if not prepare_run:
        raise LineageError(
            f"training run {training_run.info.run_id} names no prepare run (tag {tags.PREPARE_RUN} / param "
            "prepare_run); retrain it with the current train_a / train_b steps"
        )
    return prepare_run


def describe_chosen_run(step: str, run: Run, matched: Mapping[str, Any]) -> str:
    """What a "" run id resolved to: the run, the params it was matched on and every other param it ran with.

    Only ``matched`` decided the choice; the rest (a prepare run's source, data_path, seed, ...) is shown so a run
    on other data than the user assumed is visible in the log line itself.
    """
    others = ", ".join(f"{name}={value}" for name, value in sorted(run.data.params.items()) if name not in matched)
    return (
        f"{step} run {run.info.run_id} (latest FINISHED with {dict(matched)}, whatever its other parameters: "
        f"{others or 'none'}; pass {run_parameter(step)}=<run id> to pin one)"
    )


@contextmanager
def step_run(step: str) -> Iterator[mlflow.ActiveRun]:
    """Open the step's run (the one `mlflow run` created, via MLFLOW_RUN_ID), tagged with the step and its process.

    The process (host, pid, start) lets a later `main` tell a run whose process was killed (tracking/stale.py).

    When the body raises, the run is tagged :data:`abtest.tracking.tags.ERROR` = ``"<Type>: <message>"`` before
    MLflow marks it FAILED, so whoever launched the step can say why without reading its console output.

    On the embedded SQLite store, concurrent steps are made safe first (abtest/tracking/store.py): the schema is
    created once under a lock, and a lock held past MLflow's busy timeout is retried, then explained.
    """
    ensure_store_ready()
    with retry_when_locked(mlflow.start_run, what=f"{step}: start run") as run:
        # The process is recorded so a later main can tell this run from one whose process was killed.
        step_tags = {tags.STEP: step, **ProcessIdentity.current().tags()}
        retry_when_locked(lambda: mlflow.set_tags(step_tags), what=f"{step}: tag run")
        try:
            yield run
        except Exception as exc:
            _tag_error(run.info.run_id, exc)
            raise


def records_failure(main: Callable[_Params, _Result]) -> Callable[_Params, _Result]:
    """Decorate a step's ``main`` so an error raised before :func:`step_run` is tagged too.

    ``mlflow run`` creates the step's run (``MLFLOW_RUN_ID``) before the step starts, so a check that fails
    before the step opens it (a bad parameter, a refused lineage) still leaves a FAILED run: it gets the same
    :data:`abtest.tracking.tags.ERROR`. Run in process without ``mlflow run`` there is no such run, and nothing is
    tagged.
    """

    @functools.wraps(main)
    def run_and_record(*args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        # Read before main runs: mlflow.start_run consumes (unsets) MLFLOW_RUN_ID, and an error raised after the
        # step's run block has closed still fails the run `mlflow run` created.
        launched_run = MLFLOW_RUN_ID.get()
        try:
            return main(*args, **kwargs)
        except Exception as exc:
            if launched_run:
                _tag_error(launched_run, exc)
            raise

    return run_and_record


def error_text(exc: BaseException) -> str:
    """A failed step's reason as a tag value: ``"<Type>: <message>"``, cut to ``tags.SHORT_VALUE_CHARS`` chars."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= tags.SHORT_VALUE_CHARS else text[: tags.SHORT_VALUE_CHARS - 3] + "..."


def _tag_error(run_id: str, exc: BaseException) -> None:
    # The reason is best effort: failing to record it must not replace the step's own error.
    try:
        MlflowClient().set_tag(run_id, tags.ERROR, error_text(exc))
    except Exception:
        log.warning("could not tag run %s with its error", run_id, exc_info=True)


@dataclass(frozen=True)
class PreparedData:
    """Everything a `prepare` run produced, read back from its artifacts."""

    run_id: str
    params: dict[str, str]
    splits: dict[str, pd.DataFrame]
    users: pd.DataFrame
    items: pd.DataFrame
    user_features: pd.DataFrame
    item_features: pd.DataFrame
    feature_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> pd.DataFrame:
        """Training split (history features out-of-fold)."""
        return self.splits["train"]

    @property
    def val(self) -> pd.DataFrame:
        """Validation split (early stopping, calibration checks)."""
        return self.splits["val"]

    @property
    def test(self) -> pd.DataFrame:
        """Held-out test split; the A/B comparison uses only this."""
        return self.splits["test"]


def load_prepared(run_id: str, *, dst_dir: str | Path | None = None) -> PreparedData:
    """Download a prepare run's processed tables and feature tables and read them."""
    run = MlflowClient().get_run(run_id)
    root = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="", dst_path=str(dst_dir) if dst_dir else None
        )
    )
    processed = root / PROCESSED_DIR
    tables = root / FEATURE_TABLES_DIR
    missing = [
        str(p)
        for p in [
            *(processed / f"{s}.parquet" for s in SPLITS),
            processed / USERS_FILE,
            processed / ITEMS_FILE,
            tables / USER_FEATURES_FILE,
            tables / ITEM_FEATURES_FILE,
            tables / FEATURE_DEFAULTS_FILE,
        ]
        if not p.exists()
    ]
    if missing:
        raise LineageError(f"prepare run {run_id} lacks artifacts {missing}; rerun prepare")
    return PreparedData(
        run_id=run_id,
        params=dict(run.data.params),
        splits={s: pd.read_parquet(processed / f"{s}.parquet") for s in SPLITS},
        users=pd.read_parquet(processed / USERS_FILE),
        items=pd.read_parquet(processed / ITEMS_FILE),
        user_features=pd.read_parquet(tables / USER_FEATURES_FILE),
        item_features=pd.read_parquet(tables / ITEM_FEATURES_FILE),
        feature_defaults=json.loads((tables / FEATURE_DEFAULTS_FILE).read_text()),
    )
