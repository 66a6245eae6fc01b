"""The client side of a served router (`mlflow models serve`): request bodies, scoring over HTTP, and a fast, clear
failure naming the URL and the command to start when nothing answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd
import requests

from abtest.experiment import traffic

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
            payload: dict[str, Any] = {"dataframe_split": batch.to_dict(orient="split", index=False)}
            if params:
                payload["params"] = dict(params)
            try:
                response = requests.post(url, json=payload, timeout=timeout_s)
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


def invoke(
    base_url: str,
    frame: pd.DataFrame,
    *,
    params: Mapping[str, Any] | None = None,
    session: requests.Session | None = None,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Score ``frame`` on a served model; returns its predictions as a frame (raises on a non-200 answer)."""
    response = (session or requests).post(
        f"{base_url}/invocations", json=request_body(frame, params=params), timeout=timeout_s
    )
    if response.status_code != 200:
        raise RuntimeError(f"{base_url}/invocations answered {response.status_code}: {response.text[:2000]}")
    return pd.DataFrame(response.json()["predictions"])
