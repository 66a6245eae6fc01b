"""`router`'s analysis plan: built from its parameters, recorded on the version and the run, checked before a run.

Against a store of this module's own with hand-made policies (tests/steps/conftest.py ``handmade_runs``); each
test registers under its own model names.
"""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from abtest.experiment.plan import AnalysisPlan
from abtest.tracking import tags
from steps import register, router
from steps.cli import parse_params
from tests.fixtures.router import HandmadeRuns


@pytest.fixture
def names(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(policy model name, router model name) of this test alone."""
    return f"policies_{request.node.name}", f"router_{request.node.name}"


def test_the_plan_is_tagged_on_the_router_version_and_its_run(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    model, router_model = names
    register.main(
        ["--train_a_run", handmade_runs.train_a, "--train_b_run", handmade_runs.train_b, "--model_name", model]
    )
    plan_argv = ["--primary_metric", "clicks_per_user", "--plan_alpha", "0.01", "--planned_days", "21"]
    margin_argv = [
        "--margin_calibration",
        "0.03",
        "--margin_cold_start_share",
        "0.1",
        "--margin_latency_ms",
        "2.5",
    ]
    run_id = router.main(["--model_name", model, "--router_model_name", router_model, *plan_argv, *margin_argv])
    expected = AnalysisPlan(
        primary_metric="clicks_per_user",
        secondary_metrics=("ctr",),
        alpha=0.01,
        planned_days=21,
        guardrail_margins={"calibration": 0.03, "cold_start_share": 0.1, "latency_ms": 2.5},
    )
    client = MlflowClient()
    version = client.get_model_version_by_alias(router_model, "router")
    assert version.tags[tags.ANALYSIS_PLAN] == expected.to_json()
    assert client.get_run(run_id).data.tags[tags.ANALYSIS_PLAN] == expected.to_json()
    assert AnalysisPlan.from_json(version.tags[tags.ANALYSIS_PLAN]) == expected


def test_mlproject_defaults_give_the_default_plan() -> None:
    plan = router.analysis_plan(parse_params("router", []))
    assert plan == AnalysisPlan(
        primary_metric="ctr",
        secondary_metrics=("clicks_per_user",),
        alpha=0.05,
        planned_days=14,
        guardrail_margins={"calibration": 0.02, "cold_start_share": 0.02, "latency_ms": 5.0},
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--primary_metric", "revenue"],
            r"parameter primary_metric: .*one of \['ctr', 'clicks_per_user'\], got 'revenue'",
        ),
        (["--plan_alpha", "1.5"], r"parameter plan_alpha: .*alpha must be in \(0, 1\), got 1\.5"),
        (["--planned_days", "0"], r"parameter planned_days: .*integer >= 1, got 0"),
        (["--margin_calibration", "-0.1"], r"parameter margin_calibration: .*>= 0, got \{'calibration': -0\.1\}"),
        (["--margin_latency_ms", "nan"], r"parameter margin_latency_ms: .*finite.*'latency_ms': nan"),
    ],
)
def test_a_bad_plan_value_is_refused_before_a_run_opens(
    handmade_runs: HandmadeRuns, argv: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        router.check_params(parse_params("router", argv))
    before = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    with pytest.raises(ValueError, match=message):
        router.main(argv)
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == before


def test_the_router_knows_its_registered_name_when_loaded_by_path(
    handmade_runs: HandmadeRuns, names: tuple[str, str]
) -> None:
    """The decision log's fallback identity: the model config names the registered router."""
    model, router_model = names
    register.main(
        ["--train_a_run", handmade_runs.train_a, "--train_b_run", handmade_runs.train_b, "--model_name", model]
    )
    router.main(["--model_name", model, "--router_model_name", router_model])
    version = MlflowClient().get_model_version_by_alias(router_model, "router")
    config = mlflow.pyfunc.load_model(f"models:/{router_model}/{version.version}").model_config
    assert config["router_name"] == router_model
