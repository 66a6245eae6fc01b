"""One simulated A/B experiment end to end, from a prepare run's tables and a router to a readout.

:func:`run_experiment` is what the `simulate` step calls; it takes the router as a :data:`steps.traffic.Scorer`, so
the benchmark and the tests run the same code with stand-in routers. :func:`resolve_router` reads the router
version's lineage (its prepare run and split) from the registry, and :func:`endpoint_scorer` /
:func:`pyfunc_scorer` make a scorer of a served endpoint or an in-process model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow.tracking import MlflowClient

from ab_router.schema import ITEM_ID
from steps import traffic
from steps.abstats import AnalysisConfig
from steps.click_model import fit_click_model
from steps.lineage import LineageError, PreparedData
from steps.readout import ExperimentReadout, analyse, guardrail_table

log = logging.getLogger(__name__)

PREPARE_RUN_TAG = "abtest.prepare_run"  # on router versions and router runs (set by steps/router.py)
SPLIT_TAG = "abtest.split"
ROUTER_VERSION_TAG = "abtest.router_version"
ENDPOINT_BATCH_ROWS = 20_000
DEFAULT_ROUTER_URI = "models:/movielens_ctr_router@router"  # only for the hint in an error message


def check_design(*, environment: str, days: int, users_per_day: int, k: int, n_unseen: int, alpha: float) -> None:
    """Reject a bad experiment design, naming the parameter, the rule and the value.

    Needs nothing loaded, so the `simulate` step calls it before it opens a run or loads the router.
    """
    if environment not in traffic.ENVIRONMENTS:
        raise ValueError(f"parameter environment must be one of {list(traffic.ENVIRONMENTS)}, got {environment!r}")
    for name, value, minimum, meaning in (
        ("days", days, 1, ""),
        ("users_per_day", users_per_day, 0, " (0 = the test period's users, once each)"),
        ("k", k, 1, " (items shown per request)"),
        ("n_unseen", n_unseen, 0, ""),
    ):
        if value < minimum:
            raise ValueError(f"parameter {name} must be an integer >= {minimum}{meaning}, got {value}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"parameter alpha must be strictly between 0 and 1, got {alpha}")


@dataclass(frozen=True)
class ExperimentSpec:
    """The experiment's design: traffic, outcomes and analysis options."""

    environment: traffic.Environment
    days: int
    users_per_day: int
    k: int
    n_unseen: int
    seed: int
    alpha: float
    split: float  # share of users the router sends to B

    def __post_init__(self) -> None:
        check_design(
            environment=self.environment,
            days=self.days,
            users_per_day=self.users_per_day,
            k=self.k,
            n_unseen=self.n_unseen,
            alpha=self.alpha,
        )
        if not 0.0 < self.split < 1.0:
            raise ValueError(
                f"the router's split (share of users sent to B) must be strictly between 0 and 1 for an A/B "
                f"test, got {self.split}"
            )


@dataclass(frozen=True)
class ExperimentOutcome:
    """The readout and the raw impressions it was computed from."""

    readout: ExperimentReadout
    impressions: pd.DataFrame
    user_days: pd.DataFrame


def run_experiment(prepared: PreparedData, scorer: traffic.Scorer, spec: ExperimentSpec) -> ExperimentOutcome:
    """Traffic over days through ``scorer``, outcomes from the environment, then the readout."""
    rng = np.random.default_rng(spec.seed)
    test = prepared.test
    history = pd.concat([prepared.train, prepared.val], ignore_index=True)
    everything = pd.concat([history, test], ignore_index=True)
    requests_frame = traffic.arrivals(test, days=spec.days, users_per_day=spec.users_per_day, rng=rng)
    item_ids = np.union1d(prepared.items[ITEM_ID].to_numpy(), everything[ITEM_ID].to_numpy())
    slates = traffic.candidate_slates(
        requests_frame, test=test, rated=everything, item_ids=item_ids, n_unseen=spec.n_unseen, rng=rng
    )
    log.info(
        "%d requests from %d users over %d days, %d candidates to score",
        len(requests_frame),
        requests_frame["user_id"].nunique(),
        spec.days,
        len(slates),
    )
    shown = traffic.serve(slates, scorer, k=spec.k)
    truth: dict[str, float] = {}
    click_probability = None
    if spec.environment == "synthetic":
        click_model = fit_click_model(everything, prepared.items)
        click_probability = click_model.probability
        truth = traffic.counterfactual_ctr(slates, scorer, k=spec.k, click_probability=click_probability)
        log.info("true CTR if every request were served by A: %.4f, by B: %.4f", truth["A"], truth["B"])
    impressions = traffic.draw_outcomes(shown, spec.environment, rng=rng, click_probability=click_probability)
    user_days = traffic.user_day_table(impressions)
    config = AnalysisConfig(
        alpha=spec.alpha,
        expected_split=(1.0 - spec.split, spec.split),
        sequential_tuning=max(float(requests_frame["user_id"].nunique()), 1.0),
    )
    readout = analyse(
        user_days,
        traffic.pre_period_activity(history),
        config=config,
        days=spec.days,
        environment=spec.environment,
        guardrails=guardrail_table(impressions, environment=spec.environment),
        truth=truth or None,
    )
    return ExperimentOutcome(readout=readout, impressions=impressions, user_days=user_days)


# -- the router ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterHandle:
    """Which router the experiment uses and what its registry entry says about it."""

    model_uri: str
    tags: dict[str, str]

    @property
    def prepare_run(self) -> str:
        """The prepare run whose feature tables the router bundles ("" if not recorded)."""
        return self.tags.get(PREPARE_RUN_TAG, "")

    @property
    def split(self) -> float | None:
        """The configured share of users sent to B, as recorded on the version (None if not recorded)."""
        value = self.tags.get(SPLIT_TAG)
        return float(value) if value not in (None, "") else None


def resolve_router(router_uri: str, router_run: str = "") -> RouterHandle:
    """The router to use: the version a `router` run registered (``router_run``) or ``router_uri``."""
    client = MlflowClient()
    if router_run:
        run = client.get_run(router_run)
        version = run.data.tags.get(ROUTER_VERSION_TAG)
        name = run.data.params.get("router_model_name")
        if not version or not name:
            raise LineageError(f"run {router_run} is not a `router` run (no {ROUTER_VERSION_TAG} tag)")
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


def invocations_url(endpoint_url: str) -> str:
    """``<base>/invocations`` of a served router, given its base URL or the invocations URL itself."""
    url = endpoint_url.rstrip("/")
    return url if url.endswith("/invocations") else url + "/invocations"


def serve_command(endpoint_url: str, model_uri: str = DEFAULT_ROUTER_URI) -> str:
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


def check_endpoint(endpoint_url: str, *, model_uri: str = DEFAULT_ROUTER_URI, timeout_s: float = 10.0) -> None:
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


def endpoint_scorer(
    endpoint_url: str, *, model_uri: str = DEFAULT_ROUTER_URI, timeout_s: float = 120.0
) -> traffic.Scorer:
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


def load_router(handle: RouterHandle) -> tuple[Any, float | None]:
    """The in-process router and the split in its model config."""
    model = mlflow.pyfunc.load_model(handle.model_uri)
    config = getattr(model, "model_config", None) or {}
    split = config.get("split")
    return model, None if split is None else float(split)
