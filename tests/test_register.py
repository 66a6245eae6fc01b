"""`register` and `router` against a store of the test's own: versions, tags, aliases, idempotence, lineage."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from steps import register, registry, router
from tests.fixtures_router import HandmadeRuns, log_handmade_policy

MODEL = "policies_under_test"
ROUTER = "router_under_test"


def _register(runs: HandmadeRuns, *extra: str) -> str:
    return register.main(
        ["--train_a_run", runs.train_a, "--train_b_run", runs.train_b, "--model_name", MODEL, *extra]
    )


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_register_creates_one_version_per_policy_with_aliases_and_tags(handmade_runs: HandmadeRuns) -> None:
    client = MlflowClient()
    run_id = _register(handmade_runs)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions) == ["1", "2"]
    assert _aliases(client, MODEL) == {"PolicyA": "1", "PolicyB": "2"}
    a, b = versions["1"], versions["2"]
    assert a.tags[registry.SOURCE_RUN_TAG] == handmade_runs.train_a
    assert b.tags[registry.SOURCE_RUN_TAG] == handmade_runs.train_b
    assert (a.tags[registry.POLICY_TAG], b.tags[registry.POLICY_TAG]) == ("A", "B")
    assert a.tags[registry.PREPARE_RUN_TAG] == handmade_runs.prepare
    assert a.tags[registry.DATA_DIGEST_TAG].startswith("test:") and "train:" in a.tags[registry.DATA_DIGEST_TAG]
    assert (a.tags["metric.val_auc"], b.tags["metric.val_auc"]) == ("0.7", "0.75")
    assert a.source == client.get_run(handmade_runs.train_a).data.tags["abtest.model_uri"]
    assert all(v.current_stage in ("None", None) for v in versions.values())  # aliases only, never stages
    assert "PolicyA" in client.get_registered_model(MODEL).description
    run_tags = client.get_run(run_id).data.tags
    assert (run_tags["abtest.policy_a_version"], run_tags["abtest.policy_b_version"]) == ("1", "2")
    assert client.get_run(run_id).data.metrics["versions_created"] == 2


def test_second_register_with_the_same_runs_changes_nothing(handmade_runs: HandmadeRuns) -> None:
    client = MlflowClient()
    _register(handmade_runs)
    second = _register(handmade_runs)
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 2
    assert _aliases(client, MODEL) == {"PolicyA": "1", "PolicyB": "2"}
    assert client.get_run(second).data.metrics["versions_created"] == 0


def test_a_new_training_run_gets_a_new_version_and_only_its_alias_moves(handmade_runs: HandmadeRuns) -> None:
    client = MlflowClient()
    _register(handmade_runs)
    retrained_a = log_handmade_policy("train_a", handmade_runs.prepare)
    register.main(["--train_a_run", retrained_a, "--train_b_run", handmade_runs.train_b, "--model_name", MODEL])
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 3
    assert _aliases(client, MODEL) == {"PolicyA": "3", "PolicyB": "2"}


def test_register_without_run_ids_takes_the_latest_finished_training_runs(handmade_runs: HandmadeRuns) -> None:
    newer_b = log_handmade_policy("train_b", handmade_runs.prepare)
    run_id = register.main(["--model_name", MODEL])
    tags = MlflowClient().get_run(run_id).data.tags
    assert (tags["abtest.train_a_run"], tags["abtest.train_b_run"]) == (handmade_runs.train_a, newer_b)


def test_register_rejects_a_run_that_is_not_a_training_run(handmade_runs: HandmadeRuns) -> None:
    with pytest.raises(Exception, match="is a 'prepare' run, not a 'train_a' run"):
        register.main(["--train_a_run", handmade_runs.prepare, "--model_name", MODEL])


def test_router_bundles_the_aliased_versions_and_moving_an_alias_needs_a_new_router(
    handmade_runs: HandmadeRuns,
) -> None:
    client = MlflowClient()
    _register(handmade_runs)
    router_run = router.main(["--model_name", MODEL, "--router_model_name", ROUTER, "--split", "0.3"])
    live = client.get_model_version_by_alias(ROUTER, "router")
    assert str(live.version) == "1"
    assert (live.tags["abtest.policy_a_version"], live.tags["abtest.policy_b_version"]) == ("1", "2")
    assert (live.tags["abtest.split"], live.tags["abtest.assignment"]) == ("0.3", "hash")
    assert live.tags[registry.PREPARE_RUN_TAG] == handmade_runs.prepare
    assert client.get_run(router_run).data.tags["abtest.router_version"] == "1"

    pairs = pd.DataFrame({"user_id": list(range(1, 41)), "item_id": [1] * 40})
    served = mlflow.pyfunc.load_model(f"models:/{ROUTER}@router").predict(pairs)
    assert set(served["model_version"]) == {"1", "2"}
    assert served.loc[served["policy"] == "A", "model_version"].eq("1").all()

    # Point PolicyA at a retrained model: the live router keeps serving version 1 until `router` runs again.
    retrained_a = log_handmade_policy("train_a", handmade_runs.prepare)
    register.main(["--train_a_run", retrained_a, "--train_b_run", handmade_runs.train_b, "--model_name", MODEL])
    still = mlflow.pyfunc.load_model(f"models:/{ROUTER}@router").predict(pairs)
    assert still.loc[still["policy"] == "A", "model_version"].eq("1").all()
    router.main(["--model_name", MODEL, "--router_model_name", ROUTER, "--split", "0.3"])
    assert _aliases(client, ROUTER) == {"router": "2"}
    moved = mlflow.pyfunc.load_model(f"models:/{ROUTER}@router").predict(pairs)
    assert moved.loc[moved["policy"] == "A", "model_version"].eq("3").all()
    assert moved["policy"].tolist() == served["policy"].tolist()  # same salt: same users in the same arms
