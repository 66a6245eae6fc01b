"""How the experiment reaches its router: which version (by a `router` run or a models:/ URI, with the lineage
its registry entry records), and a scorer of it, in process or served by `mlflow models serve` over HTTP (with a
fast, clear failure naming the URL and the command to start when nothing answers)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import mlflow
import pandas as pd
import requests
from mlflow.tracking import MlflowClient

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


def pyfunc_scorer(model: Any) -> traffic.Scorer:
    """Score in process with a loaded pyfunc router."""

    def score(pairs: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
        return model.predict(pairs, params=dict(params) if params else None)

    return score


def load_router(handle: RouterHandle) -> tuple[Any, float | None]:
    """The in-process router and the split in its model config."""
    model = mlflow.pyfunc.load_model(handle.model_uri)
    config = getattr(model, "model_config", None) or {}
    split = config.get("split")
    return model, None if split is None else float(split)


@dataclass(frozen=True)
class ConnectedRouter:
    """The router an experiment runs through, how to score with it, and the lineage its registry entry records."""

    handle: RouterHandle
    scorer: traffic.Scorer
    split: float  # the share of users it sends to B
    prepare_run: str  # whose test period supplies the experiment's users and items


def connect_router(*, router_uri: str, router_run: str, endpoint_url: str, prepare_run: str) -> ConnectedRouter:
    """Resolve the router version, score it in process ("" ``endpoint_url``) or served, and find its prepare run.

    The split comes from the version's tag (else the loaded model's config); the prepare run is ``prepare_run``
    or the one the version records. A prepare run other than the router's is allowed (a replay on other data)
    but said in the log, since the router then serves features learnt elsewhere.
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
        scorer, split = endpoint_scorer(endpoint_url, model_uri=handle.model_uri), handle.split
    else:
        model, configured = load_router(handle)
        scorer, split = pyfunc_scorer(model), handle.split if handle.split is not None else configured
    if split is None:
        raise LineageError(f"router {handle.model_uri} records no split (tag {tags.SPLIT} or model config)")
    return ConnectedRouter(handle=handle, scorer=scorer, split=split, prepare_run=chosen)
