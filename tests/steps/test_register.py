"""`register` and `router` against a store of this module's own: versions, tags, aliases, idempotence, lineage.

The hand-made runs are logged once per module; each test registers under its own model names, so tests stay
independent without paying for a new store and new runs each.
"""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from abtest.tracking import tags
from abtest.tracking.lineage import LineageError
from abtest.tracking.tags import PREPARE_RUN as PREPARE_RUN_TAG
from abtest.tracking.tags import SOURCE_RUN as SOURCE_RUN_TAG
from abtest.tracking.tags import STEP as STEP_TAG
from steps import register, router
from tests.fixtures.router import HandmadeRuns, log_handmade_policy


@pytest.fixture
def names(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(policy model name, router model name) of this test alone."""
    return f"policies_{request.node.name}", f"router_{request.node.name}"


def _register(runs: HandmadeRuns, model: str, *, train_a: str | None = None, train_b: str | None = None) -> str:
    return register.main(
        ["--train_a_run", train_a or runs.train_a, "--train_b_run", train_b or runs.train_b, "--model_name", model]
    )


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_register_creates_one_version_per_policy_with_aliases_and_tags(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    client, model = MlflowClient(), names[0]
    run_id = _register(handmade_runs, model)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{model}'")}
    assert sorted(versions) == ["1", "2"]
    assert _aliases(client, model) == {"PolicyA": "1", "PolicyB": "2"}
    a, b = versions["1"], versions["2"]
    assert a.tags[SOURCE_RUN_TAG] == handmade_runs.train_a
    assert b.tags[SOURCE_RUN_TAG] == handmade_runs.train_b
    assert (a.tags[tags.POLICY], b.tags[tags.POLICY]) == ("A", "B")
    assert a.tags[PREPARE_RUN_TAG] == handmade_runs.prepare
    assert a.tags[tags.DATA_DIGEST].startswith("test:") and "train:" in a.tags[tags.DATA_DIGEST]
    assert (a.tags["metric.val_auc"], b.tags["metric.val_auc"]) == ("0.7", "0.75")
    assert a.source == client.get_run(handmade_runs.train_a).data.tags["abtest.model_uri"]
    assert all(v.current_stage in ("None", None) for v in versions.values())  # aliases only, never stages
    assert "PolicyA" in client.get_registered_model(model).description
    run_tags = client.get_run(run_id).data.tags
    assert (run_tags["abtest.policy_a_version"], run_tags["abtest.policy_b_version"]) == ("1", "2")
    assert client.get_run(run_id).data.metrics["versions_created"] == 2


def test_versions_carry_the_evaluation_of_their_training_runs(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    # An evaluate run started with "" ids, as `mlflow run . -e evaluate` does: the resolved ids are tags.
    with mlflow.start_run(run_name="handmade-evaluate") as evaluation:
        mlflow.set_tags(
            {
                STEP_TAG: "evaluate",
                "abtest.resolved.train_a_run": handmade_runs.train_a,
                "abtest.resolved.train_b_run": handmade_runs.train_b,
                "abtest.decision": "B wins",
                "abtest.winner": "B",
            }
        )
        mlflow.log_params({"train_a_run": "", "train_b_run": ""})
        mlflow.log_metrics({"a.auc": 0.71, "b.auc": 0.78, "diff.auc": 0.07})
    _register(handmade_runs, names[0])
    client = MlflowClient()
    a = client.get_model_version_by_alias(names[0], "PolicyA")
    b = client.get_model_version_by_alias(names[0], "PolicyB")
    assert a.tags[tags.EVALUATE_RUN] == evaluation.info.run_id
    assert (a.tags["eval.a.auc"], b.tags["eval.b.auc"]) == ("0.71", "0.78")
    assert "eval.b.auc" not in a.tags and "eval.diff.auc" not in a.tags
    assert a.tags["eval.decision"] == b.tags["eval.decision"] == "B wins"


def test_second_register_with_the_same_runs_changes_nothing(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    client, model = MlflowClient(), names[0]
    _register(handmade_runs, model)
    second = _register(handmade_runs, model)
    assert len(client.search_model_versions(f"name = '{model}'")) == 2
    assert _aliases(client, model) == {"PolicyA": "1", "PolicyB": "2"}
    assert client.get_run(second).data.metrics["versions_created"] == 0


def test_a_new_training_run_gets_a_new_version_and_only_its_alias_moves(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    client, model = MlflowClient(), names[0]
    _register(handmade_runs, model)
    _register(handmade_runs, model, train_a=log_handmade_policy("train_a", handmade_runs.prepare))
    assert len(client.search_model_versions(f"name = '{model}'")) == 3
    assert _aliases(client, model) == {"PolicyA": "3", "PolicyB": "2"}


def test_register_without_run_ids_takes_the_latest_finished_training_runs(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    newer = {step: log_handmade_policy(step, handmade_runs.prepare) for step in ("train_a", "train_b")}
    run_id = register.main(["--model_name", names[0]])
    tags = MlflowClient().get_run(run_id).data.tags
    assert (tags["abtest.train_a_run"], tags["abtest.train_b_run"]) == (newer["train_a"], newer["train_b"])


def test_register_rejects_a_run_that_is_not_a_training_run(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    with pytest.raises(LineageError, match="is a 'prepare' run, not a 'train_a' run"):
        _register(handmade_runs, names[0], train_a=handmade_runs.prepare)


def test_router_bundles_the_aliased_versions_and_moving_an_alias_needs_a_new_router(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    client, (model, router_model) = MlflowClient(), names
    run_router = ["--model_name", model, "--router_model_name", router_model, "--split", "0.3"]
    _register(handmade_runs, model)
    router_run = router.main(run_router)
    live = client.get_model_version_by_alias(router_model, "router")
    assert str(live.version) == "1"
    assert (live.tags["abtest.policy_a_version"], live.tags["abtest.policy_b_version"]) == ("1", "2")
    assert (live.tags["abtest.split"], live.tags["abtest.assignment"]) == ("0.3", "hash")
    assert live.tags[PREPARE_RUN_TAG] == handmade_runs.prepare
    assert client.get_run(router_run).data.tags["abtest.router_version"] == "1"

    pairs = pd.DataFrame({"user_id": list(range(1, 41)), "item_id": [1] * 40})
    served = mlflow.pyfunc.load_model(f"models:/{router_model}@router").predict(pairs)
    assert set(served["model_version"]) == {"1", "2"}
    assert served.loc[served["policy"] == "A", "model_version"].eq("1").all()

    # Point PolicyA at a retrained model: the live router keeps serving version 1 until `router` runs again.
    _register(handmade_runs, model, train_a=log_handmade_policy("train_a", handmade_runs.prepare))
    still = mlflow.pyfunc.load_model(f"models:/{router_model}@router").predict(pairs)
    assert still.loc[still["policy"] == "A", "model_version"].eq("1").all()
    router.main(run_router)
    assert _aliases(client, router_model) == {"router": "2"}
    moved = mlflow.pyfunc.load_model(f"models:/{router_model}@router").predict(pairs)
    assert moved.loc[moved["policy"] == "A", "model_version"].eq("3").all()
    assert moved["policy"].tolist() == served["policy"].tolist()  # same salt: same users in the same arms
