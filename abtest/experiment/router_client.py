"""How the experiment reaches its router: which version (by a `router` run or a models:/ URI, with the lineage
its registry entry records), and a scorer of it, in process or served by `mlflow models serve` over HTTP (with a
fast, clear failure naming the URL and the command to start when nothing answers).

With a ``decision_log`` directory the experiment's traffic is recorded as the decision log of a real deployment
is: in process, the router's own sink writes it (``ABTEST_DECISION_LOG`` is set to the directory while the router
loads, which is when it reads it); served, the router's answers (which carry the request ids) are written by
:class:`ab_router.decision_log.DecisionLog`, the same record builder and sink classes the served router uses.
The ground truth's forced scoring (``force_policy``) is QA, not traffic, and goes through an unrecorded scorer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import mlflow
import pandas as pd
import requests
from mlflow.tracking import MlflowClient

from ab_router.assignment import AssignmentConfig
from ab_router.decision_log import DecisionLog, RouterIdentity
from ab_router.records import DECISION_LOG_ENV, REQUEST_ID
from ab_router.sinks import DirectorySink
from abtest.experiment import traffic
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError, resolve_upstream_run

log = logging.getLogger(__name__)

ENDPOINT_BATCH_ROWS = 20_000


def invocations_url(endpoint_url: str) -> str:
    """``<base>/invocations`` of a served router, given its base URL or the invocations URL itself."""
    url = endpoint_url.rstrip("/")
    return url if url.endswith("/invocations") else url + "/invocations"


def serve_command(endpoint_url: str, model_uri: str) -> str:
    """The `mlflow models serve` command that makes ``model_uri`` answer at ``endpoint_url``."""
    parts = urlsplit(endpoint_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    return f"mlflow models serve -m {model_uri} -h {host} -p {port} --env-manager local"


def _unreachable(endpoint_url: str, error: Exception, model_uri: str) -> ConnectionError:
    return ConnectionError(
        f"parameter endpoint_url: the router endpoint {endpoint_url} is not reachable ({type(error).__name__}); "
        f"start the served router first (`{serve_command(endpoint_url, model_uri)}`) or pass "
        'endpoint_url="" to score in process'
    )


def check_endpoint(endpoint_url: str, *, model_uri: str, timeout_s: float = 10.0) -> None:
    """Fail early, naming the URL and what to start, when nothing answers at ``endpoint_url``.

    Any HTTP answer counts as reachable (a wrong path still shows up on the first scoring request, with the
    server's own message); only a refused or timed-out connection is reported here.
    """
    if not endpoint_url.startswith(("http://", "https://")):
        raise ValueError(f'parameter endpoint_url must be an http(s) URL or "" (in process), got {endpoint_url!r}')
    base = invocations_url(endpoint_url).removesuffix("/invocations")
    try:
        requests.get(f"{base}/ping", timeout=timeout_s)
    except requests.RequestException as error:
        raise _unreachable(endpoint_url, error, model_uri) from error


def endpoint_scorer(endpoint_url: str, *, model_uri: str, timeout_s: float = 120.0) -> traffic.Scorer:
    """Score through a served router (``mlflow models serve``): POST /invocations in batches."""
    url = invocations_url(endpoint_url)

    def score(pairs: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
        parts = []
        for start in range(0, len(pairs), ENDPOINT_BATCH_ROWS):
            batch = pairs.iloc[start : start + ENDPOINT_BATCH_ROWS]
            try:
                response = requests.post(url, json=request_body(batch, params=params), timeout=timeout_s)
            except requests.ConnectionError as error:
                raise _unreachable(endpoint_url, error, model_uri) from error
            if response.status_code != 200:
                raise RuntimeError(f"router endpoint {url} answered {response.status_code}: {response.text[:500]}")
            parts.append(pd.DataFrame(response.json()["predictions"]))
        return pd.concat(parts, ignore_index=True)

    return score


def request_body(
    frame: pd.DataFrame,
    *,
    orient: Literal["dataframe_records", "dataframe_split"] = "dataframe_split",
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body MLflow's scoring server reads, in either pandas orientation, with optional params."""
    if orient == "dataframe_records":
        body: dict[str, Any] = {orient: frame.to_dict(orient="records")}
    elif orient == "dataframe_split":
        # Through object so each column keeps its own type: a plain ``to_numpy()`` upcasts a mixed long/double
        # frame to float64, and the scoring server refuses 3.0 for a long column.
        body = {orient: {"columns": list(frame.columns), "data": frame.astype(object).to_numpy().tolist()}}
    else:
        raise ValueError(f"orient must be 'dataframe_records' or 'dataframe_split', got {orient!r}")
    if params:
        body["params"] = dict(params)
    return body


@dataclass(frozen=True)
class RouterHandle:
    """Which router the experiment uses and what its registry entry says about it."""

    model_uri: str
    tags: dict[str, str]

    @property
    def prepare_run(self) -> str:
        """The prepare run whose feature tables the router bundles ("" if not recorded)."""
        return self.tags.get(tags.PREPARE_RUN, "")

    @property
    def split(self) -> float | None:
        """The configured share of users sent to B, as recorded on the version (None if not recorded)."""
        value = self.tags.get(tags.SPLIT)
        return float(value) if value not in (None, "") else None


def resolve_router(router_uri: str, *, router_run: str) -> RouterHandle:
    """The router to use: the version a `router` run registered (``router_run``) or ``router_uri``."""
    client = MlflowClient()
    if router_run:
        run = client.get_run(router_run)
        version = run.data.tags.get(tags.ROUTER_VERSION)
        name = run.data.params.get("router_model_name")
        if not version or not name:
            raise LineageError(f"run {router_run} is not a `router` run (no {tags.ROUTER_VERSION} tag)")
        router_uri = f"models:/{name}/{version}"
    if not router_uri.startswith("models:/"):
        return RouterHandle(model_uri=router_uri, tags={})
    name, _, ref = router_uri.removeprefix("models:/").partition("@")
    if ref:
        version = client.get_model_version_by_alias(name, ref)
    else:
        name, _, number = router_uri.removeprefix("models:/").partition("/")
        version = client.get_model_version(name, number)
    log.info("router %s = %s version %s", router_uri, version.name, version.version)
    return RouterHandle(model_uri=f"models:/{version.name}/{version.version}", tags=dict(version.tags))


def pyfunc_scorer(model: Any, *, recorded: bool = True) -> traffic.Scorer:
    """Score in process with a loaded pyfunc router; ``recorded=False`` keeps its decision log out of it."""

    def score(pairs: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
        with contextlib.nullcontext() if recorded else _unrecorded(model):
            return model.predict(pairs, params=dict(params) if params else None)

    return score


@contextlib.contextmanager
def _unrecorded(model: Any) -> Iterator[None]:
    """The in-process router with its decision log (ab_router.model: ``decision_log``) detached meanwhile."""
    python_model = model.unwrap_python_model()
    decision_log = getattr(python_model, "decision_log", None)
    python_model.decision_log = None
    try:
        yield
    finally:
        python_model.decision_log = decision_log


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name]`` set to ``value`` (None: unset) meanwhile, restored after."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def load_router(handle: RouterHandle, *, decision_log: Path | None = None) -> tuple[Any, float | None]:
    """The in-process router and the split in its model config.

    The router reads ``ABTEST_DECISION_LOG`` once, while it loads: it is set to ``decision_log`` (None: unset,
    nothing recorded) for the load only, so this process's environment is left as it was.
    """
    with _environment(DECISION_LOG_ENV, None if decision_log is None else str(decision_log)):
        model = mlflow.pyfunc.load_model(handle.model_uri)
    config = getattr(model, "model_config", None) or {}
    split = config.get("split")
    return model, None if split is None else float(split)


def handle_assignment(handle: RouterHandle) -> AssignmentConfig:
    """The assignment rule a router version's tags record (split, salt, rule)."""
    values = {field: handle.tags.get(tag) for field, tag in tags.ASSIGNMENT.items()}
    missing = [tags.ASSIGNMENT[field] for field, value in values.items() if not value]
    if missing:
        raise LineageError(f"router {handle.model_uri} records no assignment tags {missing}")
    return AssignmentConfig(split=float(values["split"]), salt=values["salt"], assignment=values["assignment"])


def recording_scorer(
    scorer: traffic.Scorer, decision_log: DecisionLog, assignment: AssignmentConfig
) -> traffic.Scorer:
    """``scorer`` (a served router) with each call's answer appended to ``decision_log`` as the router's decisions.

    The record's ``latency_ms`` is the call's round trip as the application sees it (the served router's own time
    is in its own log, when it has one).
    """

    def score(pairs: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
        started, event_time = time.perf_counter(), datetime.now(UTC)
        routed = scorer(pairs, params)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if REQUEST_ID not in routed.columns:
            raise LineageError(
                f"the served router answers without {REQUEST_ID}: it predates the decision log; run `mlflow run . "
                "-e router` and serve the new version"
            )
        params = dict(params or {})
        split = params.get("split")
        in_force = assignment if split is None else AssignmentConfig(float(split), assignment.salt, "hash")
        forced = bool(params.get("force_policy"))
        decision_log.record(
            routed, event_time=event_time, assignment=in_force, forced=forced, latency_ms=latency_ms
        )
        return routed

    return score


@dataclass(frozen=True)
class ConnectedRouter:
    """The router an experiment runs through, how to score with it, and the lineage its registry entry records."""

    handle: RouterHandle
    scorer: traffic.Scorer  # the experiment's traffic (recorded when connected with a decision log)
    split: float  # the share of users it sends to B
    prepare_run: str  # whose test period supplies the experiment's users and items
    truth_scorer: traffic.Scorer | None = None  # the same router, never recorded (None: ``scorer``)


def connect_router(
    *,
    router_uri: str,
    router_run: str,
    endpoint_url: str,
    prepare_run: str,
    decision_log: Path | None = None,
) -> ConnectedRouter:
    """Resolve the router version, score it in process ("" ``endpoint_url``) or served, and find its prepare run.

    The split comes from the version's tag (else the loaded model's config); the prepare run is ``prepare_run``
    or the one the version records. A prepare run other than the router's is allowed (a replay on other data)
    but said in the log, since the router then serves features learnt elsewhere. With ``decision_log`` (a
    directory) the scorer's traffic is recorded there (see the module docstring).
    """
    handle = resolve_router(router_uri, router_run=router_run)
    chosen = prepare_run or handle.prepare_run
    if not chosen:
        raise LineageError(
            f"router {handle.model_uri} records no prepare run (tag {tags.PREPARE_RUN}); pass --prepare_run"
        )
    chosen = resolve_upstream_run("prepare", chosen, {}, how_to_make="mlflow run . -e prepare")
    if handle.prepare_run and chosen != handle.prepare_run:
        log.warning(
            "prepare run %s is not the one router %s bundles the feature tables of (%s): the experiment's users "
            "and items come from %s, their features from %s",
            chosen,
            handle.model_uri,
            handle.prepare_run,
            chosen,
            handle.prepare_run,
        )
    if endpoint_url:
        truth, split = endpoint_scorer(endpoint_url, model_uri=handle.model_uri), handle.split
        scorer = truth
        if decision_log is not None:
            name, _, version = handle.model_uri.removeprefix("models:/").rpartition("/")
            identity = RouterIdentity(name, version, f"simulate, from the answers of {endpoint_url}")
            scorer = recording_scorer(
                truth, DecisionLog(DirectorySink(decision_log), identity), handle_assignment(handle)
            )
    else:
        model, configured = load_router(handle, decision_log=decision_log)
        scorer, split = pyfunc_scorer(model), handle.split if handle.split is not None else configured
        truth = pyfunc_scorer(model, recorded=False)
    if split is None:
        raise LineageError(f"router {handle.model_uri} records no split (tag {tags.SPLIT} or model config)")
    return ConnectedRouter(handle=handle, scorer=scorer, split=split, prepare_run=chosen, truth_scorer=truth)
