"""Bad step parameters are rejected before a run is created, with a message naming the parameter and the rule."""

from __future__ import annotations

import time

import mlflow
import pytest
import requests

from abtest.experiment import router_client
from steps import demo, evaluate, prepare, simulate, train_b
from steps.cli import MAX_SEED, check_seed, inherit_defaults, parse_params


def _run_count() -> int:
    return len(mlflow.search_runs(search_all_experiments=True, output_format="list"))


def test_inherited_seed_that_is_not_an_integer_names_the_parameter():
    namespace = parse_params("train_b", ["--seed", "abc"])
    with pytest.raises(
        ValueError, match=r"parameter seed must be int or \"\" \(= prepare's default 42\), got 'abc'"
    ):
        inherit_defaults(namespace, "prepare", ["seed"])
    assert inherit_defaults(parse_params("train_b", ["--seed", "7"]), "prepare", ["seed"]).seed == 7
    assert inherit_defaults(parse_params("train_b", []), "prepare", ["seed"]).seed == 42


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_seed_out_of_range_names_the_range(seed):
    with pytest.raises(ValueError, match=rf"parameter seed must be an integer from 0 to {MAX_SEED}, got {seed}"):
        check_seed(seed)
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED


def test_train_b_rejects_seed_abc_before_a_run(fresh_tracking):
    before = _run_count()
    with pytest.raises(ValueError, match="parameter seed must be int"):
        train_b.main(["--seed", "abc"])
    with pytest.raises(ValueError, match="parameter seed must be an integer from 0"):
        train_b.main(["--seed", "-3"])
    assert _run_count() == before


def test_prepare_rejects_a_negative_seed_before_a_run(fresh_tracking):
    before = _run_count()
    with pytest.raises(ValueError, match=r"parameter seed must be an integer from 0 to \d+, got -1"):
        prepare.main(["--seed", "-1"])
    assert _run_count() == before


@pytest.mark.parametrize("step", [evaluate, demo])
def test_evaluate_and_demo_reject_a_negative_seed_before_a_run(fresh_tracking, step):
    before = _run_count()
    with pytest.raises(ValueError, match=r"parameter seed must be an integer from 0 to \d+, got -2"):
        step.main(["--seed", "-2"])
    assert _run_count() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "0"], "parameter days must be an integer >= 1, got 0"),
        (["--k", "0"], r"parameter k must be an integer >= 1 \(items shown per request\), got 0"),
        (["--users_per_day", "-1"], "parameter users_per_day must be an integer >= 0"),
        (["--n_unseen", "-5"], "parameter n_unseen must be an integer >= 0, got -5"),
        (["--alpha", "1.5"], "parameter alpha must be strictly between 0 and 1, got 1.5"),
        (["--environment", "live"], r"parameter environment must be one of \['replay', 'synthetic'\], got 'live'"),
        (["--seed", "abc"], "parameter seed must be int"),
        (["--seed", "-1"], "parameter seed must be an integer from 0"),
    ],
)
def test_simulate_rejects_a_bad_design_at_once_before_a_run(fresh_tracking, argv, message):
    before = _run_count()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        simulate.main(argv)
    assert time.perf_counter() - start < 2.0  # nothing (router, registry) was loaded
    assert _run_count() == before


def test_simulate_unreachable_endpoint_names_the_url_and_the_serve_command(fresh_tracking):
    before = _run_count()
    with pytest.raises(ConnectionError) as caught:
        simulate.main(["--endpoint_url", "http://127.0.0.1:1"])
    message = str(caught.value)
    assert "parameter endpoint_url: the router endpoint http://127.0.0.1:1 is not reachable" in message
    assert (
        "mlflow models serve -m models:/movielens_ctr_router@router -h 127.0.0.1 -p 1 --env-manager local"
        in message
    )
    assert _run_count() == before


def test_simulate_rejects_an_endpoint_that_is_not_a_url(fresh_tracking):
    with pytest.raises(
        ValueError, match=r"parameter endpoint_url must be an http\(s\) URL .*got 'localhost:5001'"
    ):
        simulate.main(["--endpoint_url", "localhost:5001"])


def test_endpoint_that_goes_away_mid_run_is_reported_as_unreachable(monkeypatch):
    import pandas as pd

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("refused")

    monkeypatch.setattr(router_client.requests, "post", refuse)
    scorer = router_client.endpoint_scorer("http://localhost:5001/", model_uri="models:/r/3")
    with pytest.raises(
        ConnectionError, match=r"http://localhost:5001/ is not reachable.*-m models:/r/3 -h localhost -p 5001"
    ):
        scorer(pd.DataFrame({"user_id": [1], "item_id": [2]}), None)
