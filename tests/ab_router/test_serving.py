"""The registered router behind a real `mlflow models serve` (127.0.0.1, free port), and the `demo` step.

Both run on the session pipeline: prepared_run → train_a_run / train_b_run → registered_policies → router_run.
"""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from ab_router.assignment import AssignmentConfig, assign_arms
from ab_router.schema import ROUTER_OUTPUT_COLUMNS
from abtest.experiment.assignments import summarise_assignments
from abtest.experiment.router_client import request_body
from abtest.tracking.tags import STEP as STEP_TAG
from benchmarks.served import invoke, served_model
from steps import demo

ROUTER_URI = "models:/movielens_ctr_router@router"


@pytest.fixture(scope="module")
def router_url(router_run: str) -> Iterator[str]:
    with served_model(ROUTER_URI) as url:
        yield url


@pytest.fixture(scope="module")
def router_tags(router_run: str) -> dict[str, str]:
    return dict(mlflow.MlflowClient().get_model_version_by_alias("movielens_ctr_router", "router").tags)


def _post(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=120)


@pytest.mark.e2e
@pytest.mark.parametrize("orient", ["dataframe_records", "dataframe_split"])
def test_good_request_gets_200_and_every_output_column(
    router_url: str, router_tags: dict[str, str], orient: str
) -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3, 99_999_999], "item_id": [1, 2, 3, 4]})
    response = _post(router_url, request_body(frame, orient=orient))
    assert response.status_code == 200, response.text
    out = pd.DataFrame(response.json()["predictions"])
    assert list(out.columns) == list(ROUTER_OUTPUT_COLUMNS)
    config = AssignmentConfig(float(router_tags["abtest.split"]), router_tags["abtest.salt"], "hash")
    assert out["policy"].tolist() == assign_arms(frame["user_id"], config).policy.tolist()
    versions = {"A": router_tags["abtest.policy_a_version"], "B": router_tags["abtest.policy_b_version"]}
    assert out["model_version"].tolist() == [versions[p] for p in out["policy"]]
    assert out["score"].between(0, 1).all()
    assert out["cold_user"].tolist()[-1] is True
    # no request_id input: one generated per request, the same on every row (what impressions name)
    assert out["request_id"].nunique() == 1 and len(out["request_id"].iloc[0]) == 32


@pytest.mark.e2e
def test_empty_request_gets_200_and_no_predictions(router_url: str) -> None:
    response = _post(router_url, {"dataframe_split": {"columns": ["user_id", "item_id"], "data": []}})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": []}


@pytest.mark.e2e
def test_missing_column_gets_400_naming_it(router_url: str) -> None:
    response = _post(router_url, {"dataframe_records": [{"user_id": 1}]})
    assert response.status_code == 400
    assert "item_id" in response.json()["message"]


@pytest.mark.e2e
def test_wrong_type_gets_400_naming_the_column(router_url: str) -> None:
    response = _post(router_url, {"dataframe_records": [{"user_id": "abc", "item_id": 2}]})
    assert response.status_code == 400
    assert "user_id" in response.json()["message"]


@pytest.mark.e2e
def test_invalid_param_gets_400(router_url: str) -> None:
    body = {"dataframe_records": [{"user_id": 1, "item_id": 2}], "params": {"force_policy": "C"}}
    response = _post(router_url, body)
    assert response.status_code == 400
    assert "force_policy must be one of" in response.json()["message"]


@pytest.mark.e2e
def test_a_user_keeps_the_same_arm_across_requests_and_params_work(router_url: str) -> None:
    users = pd.DataFrame({"user_id": np.arange(1, 201), "item_id": np.ones(200, dtype=np.int64)})
    with requests.Session() as session:
        first = invoke(router_url, users, session=session)
        again = invoke(router_url, users.iloc[::-1].reset_index(drop=True), session=session)
        forced = invoke(router_url, users.head(20), params={"force_policy": "B"}, session=session)
    assert first["policy"].tolist() == again["policy"].tolist()[::-1]
    assert set(first["policy"]) == {"A", "B"}
    assert set(forced["policy"]) == {"B"}


@pytest.mark.e2e
def test_ten_thousand_rows_in_one_request(router_url: str) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(1, 400, 10_000), "item_id": rng.integers(1, 300, 10_000)})
    out = invoke(router_url, frame)
    assert len(out) == 10_000
    assert out["user_id"].tolist() == frame["user_id"].tolist()


def test_demo_prints_the_assignment_table(router_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = demo.main(["--n_users", "200", "--seed", "1"])
    printed = capsys.readouterr().out
    assert "share_users" in printed and "sample-ratio check over" in printed and "PolicyA" not in printed
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags[STEP_TAG] == "demo"
    metrics = run.data.metrics
    assert metrics["users_a"] + metrics["users_b"] > 0
    assert metrics["srm_p_value"] > 0.001
    assert abs(metrics["share_b"] - 0.5) < 0.2


def test_summary_counts_users_not_rows_and_tests_the_split() -> None:
    routed = pd.DataFrame(
        {
            "user_id": [*range(60), *range(60, 100), 0, 0],
            "policy": ["A"] * 60 + ["B"] * 40 + ["A", "A"],
            "score": [0.2] * 60 + [0.6] * 40 + [0.2, 0.2],
        }
    )
    summary = summarise_assignments(routed, split=0.5)
    assert summary.table["users"].tolist() == [60, 40]
    assert summary.table["rows"].tolist() == [62, 40]
    assert summary.table["mean_score"].tolist() == pytest.approx([0.2, 0.6])
    # chi-square of (60, 40) against (50, 50): statistic 4, p = 0.0455
    assert summary.srm_p_value == pytest.approx(0.045500, abs=1e-6)
    assert summarise_assignments(routed, split=0.0).srm_p_value == 0.0


def test_request_body_keeps_each_columns_type() -> None:
    # A long column sent as 3.0 is refused by the scoring server, so a mixed frame must not be upcast to floats.
    frame = pd.DataFrame({"user_id": np.array([1, 2], dtype=np.int64), "score": [0.5, 0.25]})
    body = request_body(frame)
    assert body["dataframe_split"]["data"] == [[1, 0.5], [2, 0.25]]
    assert all(type(row[0]) is int for row in body["dataframe_split"]["data"])
